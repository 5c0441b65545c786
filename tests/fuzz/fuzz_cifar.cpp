// libFuzzer target: parse_cifar on arbitrary bytes, both record kinds. Any input must either
// parse into consistent sizes and in-range labels or raise mdq::Error; nothing else.
#include <cstdint>
#include <cstdlib>

#include "data/formats.h"
#include "common/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mdq::data;
  for (CifarKind kind : {CifarKind::Cifar10, CifarKind::Cifar100}) {
    try {
      RawImages r = parse_cifar(data, size, kind, "fuzz.bin");
      int classes = kind == CifarKind::Cifar10 ? 10 : 100;
      if (r.pixels.size() != static_cast<size_t>(r.count) * 3072 || r.labels.size() != static_cast<size_t>(r.count)) std::abort();
      for (int32_t l : r.labels)
        if (l < 0 || l >= classes) std::abort();
    } catch (const mdq::Error&) {
    }
  }
  return 0;
}

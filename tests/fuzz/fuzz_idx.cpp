// libFuzzer target: gunzip_if_needed + parse_idx + idx_to_images on arbitrary bytes (the first
// byte picks whether the rest is used as the image or the label file). Any input must parse
// consistently or raise mdq::Error; a small inflate limit keeps gzip bombs cheap.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "data/formats.h"
#include "common/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mdq::data;
  if (size < 1) return 0;
  try {
    std::vector<uint8_t> bytes = gunzip_if_needed(std::vector<uint8_t>(data + 1, data + size), "fuzz.gz", 1 << 22);
    IdxArray a = parse_idx(bytes.data(), bytes.size(), "fuzz-idx");
    size_t total = 1;
    for (int64_t d : a.dims) total *= static_cast<size_t>(d);
    if (total != a.data.size()) std::abort();
    // Pair it with a fixed valid partner so idx_to_images runs too. (A file with a zero dim can
    // claim any count in dims[0] with no data; the partner is not built for those.)
    if (total == 0 || a.dims[0] > (1 << 20)) return 0;
    IdxArray labels{{a.dims[0]}, std::vector<uint8_t>(static_cast<size_t>(a.dims[0]), 1)};
    if (data[0] & 1) {
      RawImages r = idx_to_images(a, labels, 10, "fuzz-images", "labels");
      if (r.pixels.size() != static_cast<size_t>(r.count) * r.height * r.width) std::abort();
    } else if (a.dims.size() == 1) {
      IdxArray images{{a.dims[0], 2, 2}, std::vector<uint8_t>(static_cast<size_t>(a.dims[0]) * 4, 0)};
      RawImages r = idx_to_images(images, a, 10, "images", "fuzz-labels");
      for (int32_t l : r.labels)
        if (l < 0 || l >= 10) std::abort();
    }
  } catch (const mdq::Error&) {
  }
  return 0;
}

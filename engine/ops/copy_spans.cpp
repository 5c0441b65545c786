#include "engine/ops/copy_spans.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "engine/backend/registry.h"

namespace mdq::ops {
namespace {

void copy_spans_cpu(const CopySpan* spans, int count) {
  for (int s = 0; s < count; ++s) std::memcpy(spans[s].dst, spans[s].src, spans[s].bytes);
}

}  // namespace

void copy_spans(Device device, const std::vector<CopySpan>& spans) {
  for (size_t s = 0; s < spans.size(); ++s) {
    const CopySpan& c = spans[s];
    MDQ_CHECK(c.bytes % 4 == 0 && reinterpret_cast<uintptr_t>(c.dst) % 4 == 0 &&
                  reinterpret_cast<uintptr_t>(c.src) % 4 == 0,
              "copy_spans: span " << s << " (" << c.bytes << " bytes from " << c.src << " to " << c.dst
                                  << ") is not whole 4-byte words");
    MDQ_CHECK(c.bytes == 0 || (c.dst != nullptr && c.src != nullptr), "copy_spans: span " << s << " has a null pointer");
  }
  const auto copy = backend::dispatch("copy_spans", device, copy_spans_cpu, &backend::CudaBackend::copy_spans);
  for (size_t first = 0; first < spans.size(); first += kernels::kCopySpansMax)
    copy(spans.data() + first, static_cast<int>(std::min<size_t>(kernels::kCopySpansMax, spans.size() - first)));
}

}  // namespace mdq::ops

// copy_spans (copy_spans.h): each span is cut into chunks of kChunkWords 4-byte words and the
// grid's blocks take the chunks in turn, so one launch moves every span at full bandwidth however
// their sizes differ. A span whose two pointers are 16-byte aligned moves as uint4, else as words.
#include <cstdint>

#include "common/error.h"
#include "kernels/backend.h"
#include "kernels/copy_spans.h"
#include "kernels/cuda_common.h"

namespace mdq::kernels {
namespace {

constexpr int64_t kChunkWords = 8192;  // 32 KiB: a multiple of 4, so chunks keep uint4 alignment
constexpr int kBlock = 256;

// The spans of one launch, by value in the kernel's arguments (about 2 KiB).
struct SpanTable {
  CopySpan span[kCopySpansMax];
  int64_t first_chunk[kCopySpansMax + 1];  // span s owns chunks [first_chunk[s], first_chunk[s + 1])
  int count;
};

__global__ void __launch_bounds__(kBlock) copy_spans_kernel(const SpanTable t) {
  const int64_t chunks = t.first_chunk[t.count];
  for (int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
    int s = 0;
    while (t.first_chunk[s + 1] <= c) ++s;  // at most kCopySpansMax steps, the same in every thread
    const auto* src = static_cast<const uint32_t*>(t.span[s].src);
    auto* dst = static_cast<uint32_t*>(t.span[s].dst);
    const int64_t words = static_cast<int64_t>(t.span[s].bytes / 4);
    const int64_t w0 = (c - t.first_chunk[s]) * kChunkWords;
    const int64_t w1 = w0 + kChunkWords < words ? w0 + kChunkWords : words;
    int64_t w = w0;
    if (((reinterpret_cast<uintptr_t>(src) | reinterpret_cast<uintptr_t>(dst)) & 15) == 0) {
      const int64_t v1 = w0 + (w1 - w0) / 4 * 4;
      for (int64_t i = w0 / 4 + threadIdx.x; i < v1 / 4; i += blockDim.x)
        reinterpret_cast<uint4*>(dst)[i] = reinterpret_cast<const uint4*>(src)[i];
      w = v1;
    }
    for (int64_t i = w + threadIdx.x; i < w1; i += blockDim.x) dst[i] = src[i];
  }
}

}  // namespace

void copy_spans(const CopySpan* spans, int count) {
  MDQ_CHECK(count >= 0 && count <= kCopySpansMax, "copy_spans: " << count << " spans in one launch, at most "
                                                                  << kCopySpansMax);
  SpanTable t{};
  t.count = count;
  for (int s = 0; s < count; ++s) {
    t.span[s] = spans[s];
    const int64_t words = static_cast<int64_t>(spans[s].bytes / 4);
    t.first_chunk[s + 1] = t.first_chunk[s] + (words + kChunkWords - 1) / kChunkWords;
  }
  const int64_t chunks = t.first_chunk[count];
  if (chunks == 0) return;
  const int64_t cap = static_cast<int64_t>(cuda::sm_count()) * 8;
  copy_spans_kernel<<<static_cast<unsigned>(chunks < cap ? chunks : cap), kBlock, 0, cuda::stream()>>>(t);
  CUDA_CHECK_LAUNCH();
}

void register_copy_spans(CudaBackend& b) { b.copy_spans = copy_spans; }

}  // namespace mdq::kernels

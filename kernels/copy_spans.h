// Many device-to-device copies in one launch, on the engine's stream: packing a training step's
// gradients into the data-parallel buckets and back (engine/dist/grad_reducer.cpp) had taken a
// cudaMemcpyAsync per parameter and direction, about 120 a step for ResNet-18.
#pragma once
#include <cstddef>

namespace mdq::kernels {

struct CopySpan {
  void* dst;
  const void* src;
  size_t bytes;
};
constexpr int kCopySpansMax = 64;  // spans per launch: their table travels as the kernel's argument

// Copies every span: pointers 4-byte aligned, bytes a multiple of 4, no span overlapping another
// (engine/ops/copy_spans.cpp checks the first two); count <= kCopySpansMax.
void copy_spans(const CopySpan* spans, int count);

}  // namespace mdq::kernels

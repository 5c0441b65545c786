// The output size of a k-tap window sliding with stride `stride` over `in` positions, zero-padded
// by `pad` on each side (floor division, no partial windows): convolutions and pools alike, on
// the engine's tensors and in the kernels' launchers (so in common/, which both include).
#pragma once

namespace mdq::ops {

template <class I>
constexpr I window_output_size(I in, I k, I stride, I pad) {
  return (in + 2 * pad - k) / stride + 1;
}

}  // namespace mdq::ops

// Bit packing of signs along the channel dimension (DESIGN.md E11/E12) and bf16 conversion, on
// the CPU (reference loops) or the GPU (kernels/bitpack.cu), dispatching on the tensor's device.
//
// Packed layout: channels innermost, C channels in Cw = ceil(C/32) u32 words; channel c is bit
// c % 32 of word c / 32; bit 1 means +1 (x >= 0), 0 means -1; bits of padded channels are 0.
// Activations pack as NHWC [N][H][W][Cw]; conv weights as [O][KH][KW][Cw].
// Ternary values {-1, 0, 1} pack as two planes of that layout: sign (x > 0) and nonzero (x != 0).
#pragma once
#include <cstdint>

#include "common/bf16.h"
#include "engine/tensor.h"

namespace mdq::packed {

inline int64_t packed_words(int64_t channels) { return (channels + 31) / 32; }

// Elementwise bf16 <-> f32 on a tensor (the per-value rounding: common/bf16.h).
Tensor to_bf16(const Tensor& x);  // f32 -> bf16, same shape and device
Tensor to_f32(const Tensor& x);   // bf16 -> f32

// x f32 or bf16 [..., C], channels innermost -> u32 [..., Cw].
Tensor pack_signs(const Tensor& x);
// x f32 [N][C][H][W] (NCHW; also OIHW conv weights, and [O][C] linear weights as 1x1) ->
// u32 [N][H][W][Cw] (packed NHWC / [O][KH][KW][Cw]).
Tensor pack_signs_nchw(const Tensor& x);
// Bits [..., Cw] -> f32 ±1 [..., C].
Tensor unpack_signs(const Tensor& bits, int64_t channels);

struct TernaryPlanes {
  Tensor sign;     // u32 [..., Cw], bit 1 where x > 0
  Tensor nonzero;  // u32 [..., Cw], bit 1 where x != 0
};
// x f32 [..., C] with values in {-1, 0, 1} (already rounded, E11).
TernaryPlanes pack_ternary(const Tensor& x);
Tensor unpack_ternary(const TernaryPlanes& planes, int64_t channels);  // f32 {-1, 0, 1} [..., C]

// Which level set a tensor's values lie in: 2 = {-1, 1}, 3 = {-1, 0, 1}, 0 = anything else
// (what can be packed as sign bits, as two planes, or not at all). Reads the values on the host.
int level_set(const Tensor& t);

// Layout changes: engine/packed/nhwc.h (to_nhwc, to_nchw).

}  // namespace mdq::packed

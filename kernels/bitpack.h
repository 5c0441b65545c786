// Launchers for bit packing and its helpers (kernels/bitpack.cu): signs -> bits along the
// channel dimension (DESIGN.md E11/E12), bf16 conversion, and the popcounts that E12's mask
// terms need. Pointers are device pointers; work is queued on mdq::cuda::stream().
// CPU references: engine/packed/bitpack.cpp.
#pragma once
#include <cstdint>

namespace mdq::kernels {

// Channels-innermost input [P][C] (P = every leading dim multiplied) -> bits [P][Cw],
// Cw = ceil(C/32); bit c%32 of word c/32 is 1 when x >= 0 (+1), padded bits are 0.
void pack_signs_pc_f32(const float* x, uint32_t* bits, int64_t P, int C);
void pack_signs_pc_bf16(const uint16_t* x, uint32_t* bits, int64_t P, int C);
// Channels-second input [N][C][S] (NCHW, S = H*W) -> bits [N][S][Cw] (packed NHWC).
void pack_signs_ncs_f32(const float* x, uint32_t* bits, int64_t N, int C, int64_t S);
// Ternary {-1, 0, 1} values [P][C] -> two planes: sign (x > 0) and nonzero (x != 0).
void pack_ternary_pc_f32(const float* x, uint32_t* sign, uint32_t* nonzero, int64_t P, int C);
// Bits [P][Cw] -> ±1 f32 [P][C].
void unpack_signs_pc_f32(const uint32_t* bits, float* x, int64_t P, int C);

// out[p] = popc of all Cw words of row p: E12's popc(A) per input pixel, summed over the valid
// taps of an output pixel in the convolution epilogue.
void row_popc(const uint32_t* bits, int32_t* out, int64_t P, int Cw);
// bf16 <-> f32, round to nearest even (__float2bfloat16_rn).
void f32_to_bf16(const float* x, uint16_t* y, int64_t n);
void bf16_to_f32(const uint16_t* x, float* y, int64_t n);

}  // namespace mdq::kernels

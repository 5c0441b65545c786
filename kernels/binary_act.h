// Launchers for what a fully binary network (act_bits = 1) does to its packed activations
// between W1A1 convolutions (kernels/binary_act.cu): max pooling of ±1 values, which is the OR
// of their bits, global average pooling straight from the bits, and unpacking to the float
// engine's NCHW f32 where a float layer takes over.
// Device pointers; work is queued on mdq::cuda::stream(). CPU references: engine/packed/binary_act.cpp.
#pragma once
#include <cstdint>

namespace mdq::kernels {

// x bits [N][H][W][Cw] (packed NHWC, bit 1 = +1) -> y [N][OH][OW][Cw]: each word the OR of the
// window's words over k x k windows moved by s, padded by p on every side. Padded positions take
// no part (engine/ops/pooling.h: padding never wins; every window holds a real element).
void maxpool_bits_nhwc(const uint32_t* x, uint32_t* y, int N, int H, int W, int Cw, int k, int s, int p, int OH,
                       int OW);
// bits [N][S][Cw] (packed NHWC, S = H*W) -> out f32 [N][C]: the mean of channel c's ±1 values
// over the S pixels, (2 count - S) / S with count its set bits: the float engine's CUDA global
// average pool of the unpacked values bit for bit (its f32 sum of ±1 is that integer exactly,
// then divided by (float)S the same way).
void global_avg_pool_bits(const uint32_t* bits, float* out, int64_t N, int C, int64_t S);
// bits [N][S][Cw] (packed NHWC, S = H*W) -> x f32 ±1 [N][C][S] (NCHW).
void unpack_signs_ncs_f32(const uint32_t* bits, float* x, int64_t N, int C, int64_t S);

}  // namespace mdq::kernels

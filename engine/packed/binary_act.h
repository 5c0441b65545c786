// Packed ±1 activations between W1A1 layers of a fully binary network (act_bits = 1; DESIGN.md
// E12's packed NHWC layout, engine/packed/bitpack.h): max pooling, which on ±1 values is the OR
// of the window's bits, and unpacking to the float engine's NCHW f32 for a float layer after a
// binary one; global average pooling (before the classifier) straight from the bits. CPU reference loops or the GPU
// (kernels/binary_act.cu), dispatching on the tensor's device.
#pragma once
#include "engine/tensor.h"

namespace mdq::packed {

// bits u32 [N][H][W][Cw] -> u32 [N][OH][OW][Cw], OH = ops::pool_output_size(H, kernel, stride,
// padding): max(±1 over a window) = +1 iff some bit is 1. Padding never wins, as in
// ops::max_pool2d_forward, so the result equals packing the float engine's max pool of the
// unpacked values; padding <= kernel / 2 (every window holds a real element).
Tensor max_pool2d_bits(const Tensor& bits, int64_t kernel, int64_t stride, int64_t padding);

// bits u32 [N][H][W][Cw] -> f32 [N][C]: each channel's mean of its ±1 values over the H W
// pixels, as ops::global_avg_pool_forward(unpack_signs_nchw(bits, channels)) computes it on the
// same device, bit for bit (the sum of ±1 values is an integer, exact in f32 and in double).
Tensor global_avg_pool_bits(const Tensor& bits, int64_t channels);

// bits u32 [N][H][W][Cw] -> f32 ±1 [N][C][H][W] (NCHW), the inverse of pack_signs_nchw.
Tensor unpack_signs_nchw(const Tensor& bits, int64_t channels);

}  // namespace mdq::packed

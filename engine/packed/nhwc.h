// The NHWC passes an inference plan needs around its packed convolutions (engine/infer): layout
// changes to and from the float engine's NCHW f32, pooling, the residual sum with ReLU, and the
// split of f32 activations into bf16 hi + lo channels (E12's W1A16 layers at ~16 significant
// bits). Values are bf16 or f32, channels innermost ([N][H][W][C] or [N][C]); each call checks
// its input and dispatches to kernels/nhwc_bf16.h's CUDA pass or its CPU reference, by device.
#pragma once
#include <cstdint>

#include "engine/tensor.h"

namespace mdq::packed {

// x f32 NCHW [N][C][H][W] -> NHWC [N][H][W][C] as dtype: f32 (a copy) or bf16 (rounded to
// nearest even).
Tensor to_nhwc(const Tensor& x, DType dtype);
// x f32 NCHW [N][C][H][W] -> bf16 NHWC [N][H][W][channels], channels >= C: rounded to nearest
// even, the channels past C zero (kernels::nchw_f32_to_nhwc_bf16_padded): images for a
// convolution whose weights are zero-padded to the same channel count.
Tensor to_nhwc_bf16_padded(const Tensor& x, int64_t channels);
// x NHWC [N][H][W][C] -> NCHW [N][C][H][W], same dtype (so that a flatten of it is nn::Flatten's
// order).
Tensor to_nchw(const Tensor& x);
// y = a + b (b undefined: a), then max(0, .) when relu; computed in f32, stored as a's dtype.
Tensor add_nhwc(const Tensor& a, const Tensor& b, bool relu);
// y = x scale[c] + shift[c] (one fma in f32; scale or shift undefined: 1 or 0), then max(0, .)
// when relu, stored as x's dtype: a BatchNorm folded after a convolution (engine/infer/fold.h)
// with its ReLU, in one pass. scale and shift: f32 [C] on x's device.
Tensor affine_nhwc(const Tensor& x, const Tensor& scale, const Tensor& shift, bool relu);
// Max over k x k windows moved by s, padding p never winning: [N][H][W][C] -> [N][OH][OW][C].
Tensor max_pool_nhwc(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding);
// Mean over the pixels, summed in f32: [N][H][W][C] -> [N][C], same dtype.
Tensor global_avg_pool_nhwc(const Tensor& x);
// x f32 [..., C] -> bf16 [..., 2C] = [hi | lo], hi = bf16(a), lo = bf16(a - hi)
// (kernels::split_bf16_nhwc): a layer whose weights are packed twice along the input channels
// then computes sum w (hi + lo) on the unchanged bf16 kernels.
Tensor split_bf16(const Tensor& x);

}  // namespace mdq::packed

// Pooling on NCHW f32 tensors, forward and backward, CPU or GPU (no autograd: see
// engine/nn/pooling.h). Windows are kernel x kernel, moved by `stride`, over an input padded by
// `padding` on every side; output size floor((H + 2p - k) / s) + 1 (PyTorch, ceil_mode off).
// padding <= kernel / 2, as in PyTorch, so every window holds at least one real element.
//   max: padding never wins; ties go to the first element in row-major window order; a NaN
//        wins over numbers. Backward routes each output grad to its argmax.
//   avg: padded zeros count (count_include_pad = true): the divisor is always kernel^2.
//   global avg: [N, C, H, W] -> [N, C], the mean over H*W.
#pragma once
#include "engine/tensor.h"

namespace mdq::ops {

int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t padding);

struct MaxPool2dResult {
  Tensor out;     // f32 [N, C, Ho, Wo]
  Tensor argmax;  // i32 [N, C, Ho, Wo]: h * W + w of the chosen element in its input plane
};
MaxPool2dResult max_pool2d_forward(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding);
Tensor max_pool2d_backward(const Tensor& grad_out, const Tensor& argmax, const Shape& input_shape, int64_t kernel,
                           int64_t stride, int64_t padding);

Tensor avg_pool2d_forward(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding);
Tensor avg_pool2d_backward(const Tensor& grad_out, const Shape& input_shape, int64_t kernel, int64_t stride,
                           int64_t padding);

Tensor global_avg_pool_forward(const Tensor& x);                                    // [N,C,H,W] -> [N,C]
Tensor global_avg_pool_backward(const Tensor& grad_out, const Shape& input_shape);  // [N,C] -> [N,C,H,W]

}  // namespace mdq::ops

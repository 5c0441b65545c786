// 2-D convolution (cross-correlation, like PyTorch) on NCHW f32 tensors (or NHWC bf16
// activations, below): forward and the three
// backward pieces, on the CPU (a plain reference, engine/ops/conv2d.cpp) or the GPU (cuDNN,
// kernels/conv2d.cu). No autograd here: see engine/nn/conv2d.h.
//
//   x [N, C, H, W], w [O, C/groups, KH, KW], bias [O] (optional), y [N, O, OH, OW]
//   OH = (H + 2 padding - KH) / stride + 1, OW likewise.
//   y[n,o,i,j] = bias[o] + sum_{c in group(o), kh, kw} w[o,c,kh,kw] x[n, c, i*stride-padding+kh, j*stride-padding+kw]
// Channels are split into `groups` equal groups; output channel o reads input group o / (O/groups).
// Depthwise is groups == C == O.
#pragma once
#include "engine/tensor.h"
#include "kernels/conv2d.h"

namespace mdq::ops {

struct Conv2dParams {
  int64_t stride = 1, padding = 0, groups = 1;
};

// The output shape, after checking that x, w and p fit together (errors name the operands).
Shape conv2d_output_shape(const Shape& x_shape, const Shape& w_shape, const Conv2dParams& p);

// bias may be an undefined Tensor (no bias). filter: conv2d_filter(x, w, p), or undefined.
Tensor conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p,
                      const Tensor& filter = Tensor());
// dL/dx from dL/dy; x_shape is the forward input's shape (it is not implied by y: stride rounds down).
Tensor conv2d_backward_input(const Tensor& grad_out, const Tensor& w, const Shape& x_shape, const Conv2dParams& p);
// dL/dw from dL/dy and the forward input x.
Tensor conv2d_backward_weight(const Tensor& grad_out, const Tensor& x, const Shape& w_shape, const Conv2dParams& p);
// Both at once (what autograd calls): under BF16 the GPU converts grad_out once for both. An
// output not asked for is left undefined.
// input_grad_sum (f32, x's shape and device), when given with want_input, receives the input
// gradient added into it (what autograd does when x already has a gradient from another branch)
// and input is left undefined: one pass and one allocation fewer than returning it and adding
// after, with the same sum bit for bit.
struct Conv2dGrads {
  Tensor input, weight;
};
Conv2dGrads conv2d_backward(const Tensor& grad_out, const Tensor& x, const Tensor& w, const Conv2dParams& p,
                            bool want_input, bool want_weight, Tensor* input_grad_sum = nullptr,
                            const Tensor& filter = Tensor());
// The NHWC bf16 path (engine/ops/layout.h): x bf16 [N, H, W, C] gives y bf16 [N, OH, OW, O]
// (conv2d_forward above takes either form of x and answers in it), and conv2d_backward with an
// NHWC bf16 grad_out lands here: x must be the NHWC input itself (no copy), input is bf16
// NHWC, weight f32, and nothing is summed into an existing gradient (input_grad_sum null).
Conv2dGrads conv2d_backward_nhwc(const Tensor& grad_out, const Tensor& x, const Tensor& w, const Conv2dParams& p,
                                 bool want_input, bool want_weight, const Tensor* input_grad_sum = nullptr,
                                 const Tensor& filter = Tensor());
// The bf16 filter the GPU's NHWC bf16 convolution of x with w reads (kernels/conv2d.h,
// conv2d_filter_nhwc_bf16): made once per step by autograd's conv2d and handed to the forward
// and the backward, so the weight is converted once, not twice. Undefined where there is none to
// make (x not NHWC bf16 on the GPU, a depthwise convolution): the calls then read w.
Tensor conv2d_filter(const Tensor& x, const Tensor& w, const Conv2dParams& p);
// dL/dbias [O]: grad_out summed over N, OH, OW (either form).
Tensor conv2d_backward_bias(const Tensor& grad_out);

// What the CUDA backend's cuDNN plan cache holds for these shapes under the current precision
// (kernels/conv2d.h: each direction's algorithm, math type and workspace; algo -1 until that
// direction has run). Throws without a CUDA backend.
namespace cudnn_conv {
using Choice = kernels::CudnnConvChoice;
using Choices = kernels::CudnnConvChoices;
Choices choices(const Shape& x_shape, const Shape& w_shape, const Conv2dParams& p);
}  // namespace cudnn_conv

}  // namespace mdq::ops

// Differentiable layout changes between NCHW f32 and NHWC bf16 activations (engine/ops/layout.h),
// and the one rule every layer without an NHWC bf16 kernel follows: take its input through
// as_nchw_f32 first. A layer that has one (convolution, BatchNorm, the residual sums, the
// activations) takes both forms, so a bf16 network runs NHWC from its first convolution to its
// pooling head.
#pragma once
#include "engine/autograd.h"

namespace mdq::nn {

Var to_nhwc_bf16(const Var& x);  // backward: the gradient back to NCHW f32
Var to_nchw_f32(const Var& x);   // backward: the gradient rounded to NHWC bf16
// x itself unless it is an NHWC bf16 activation, which it converts.
Var as_nchw_f32(const Var& x);
// x itself if it is an NHWC bf16 activation, else (an NCHW f32 one) converted.
Var as_nhwc_bf16(const Var& x);

}  // namespace mdq::nn

// Activation functions on f32 or bf16 tensors of any shape, forward and backward, CPU or GPU (no
// autograd: see engine/nn/activation.h for the differentiable versions and the modules).
//   relu(x)  = max(x, 0)            relu'  = 1[x > 0]        (0 at the kink x = 0)
//   relu6(x) = min(max(x, 0), 6)    relu6' = 1[0 < x < 6]    (0 at both kinks)
//   sign(x)  = +1 if x >= 0 else -1 sign_ste' = 1[|x| <= 1]  (clipped straight-through, E9)
// NaN passes through relu, relu6 and sign, so divergence stays visible. Each takes f32 or bf16
// (the bf16 NHWC activations, engine/ops/layout.h; elementwise, so any layout) and answers in its
// input's dtype: a bf16 result is the f32 rule on the widened values, rounded once.
#pragma once
#include "engine/tensor.h"

namespace mdq::ops {

Tensor relu_forward(const Tensor& x);
Tensor relu_backward(const Tensor& grad_out, const Tensor& x);  // grad_out * 1[x > 0]
Tensor relu6_forward(const Tensor& x);
Tensor relu6_backward(const Tensor& grad_out, const Tensor& x);     // grad_out * 1[0 < x < 6]
Tensor sign_forward(const Tensor& x);                               // sign(0) = +1
Tensor sign_ste_backward(const Tensor& grad_out, const Tensor& x);  // grad_out * 1[|x| <= 1]

}  // namespace mdq::ops

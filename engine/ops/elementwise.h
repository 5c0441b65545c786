// Elementwise tensor math on f32 tensors of equal shape, on the CPU or the GPU (no autograd:
// see engine/nn/functional.h for the differentiable versions). add, add_relu, sub, mul and
// axpy_ with alpha 1 also take two bf16 tensors (the bf16 NHWC activations and their gradients,
// engine/ops/layout.h): the f32 math on the widened values, one rounding to bf16.
#pragma once
#include "engine/tensor.h"

namespace mdq::ops {

Tensor add(const Tensor& a, const Tensor& b);
Tensor add_relu(const Tensor& a, const Tensor& b);  // relu(a + b), one pass
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& a, float s);
void axpy_(Tensor& y, float alpha, const Tensor& x);  // y += alpha * x, in place
Tensor sum_all(const Tensor& a);                      // one-element tensor, same device

}  // namespace mdq::ops

// Projections of the quantizer on tensors, CPU reference or CUDA (dispatch on the device):
// E1/E2 tanh and E3 softmax forward and backward, differentiable versions on Var, E11
// rounding, and the method-level "primal from stored variable" that the Quantizer uses.
// Softmax-family tensors carry the levels as a leading dimension: logits [K, *shape] -> x [*shape].
#pragma once
#include "engine/autograd.h"
#include "engine/quant/method.h"
#include "engine/tensor.h"

namespace mdq::quant {

// E1 (levels 2), E2 (levels 3): x = 1/(K−1) Σ tanh(β (x̃ − b_i)).
Tensor tanh_project(const Tensor& dual, float beta, int levels);
// ∂L/∂x̃ = P'_β(x̃) ⊙ ∂L/∂x (the GD-tanh chain rule, E9).
Tensor tanh_project_backward(const Tensor& dual, const Tensor& grad, float beta, int levels);
// E3 (levels 2, 3, 4): x = Σ_λ q_λ softmax(β ũ)_λ over the leading dimension.
Tensor softmax_project(const Tensor& logits, float beta, int levels);
// ∂L/∂ũ_λ = β u_λ (q_λ − x) ∂L/∂x (the PMF Jacobian, E9); grad has the shape of x.
Tensor softmax_project_backward(const Tensor& logits, const Tensor& grad, float beta, int levels);

// Differentiable versions (record a backward on the tape like engine/nn/functional.h).
Var tanh_project(const Var& dual, float beta, int levels);
Var softmax_project(const Var& logits, float beta, int levels);

// E11. Tanh levels: nearest of the K uniform levels (binary: sign, with sign(0) = +1; ties go
// to the upper level). Softmax: q_argmax over the leading dimension (ũ or u; first max wins).
Tensor tanh_round(const Tensor& x, int levels);
Tensor softmax_round(const Tensor& stored, int levels);

// What a parameter's layer reads, from its stored variable (x̃, ũ, x or u): P_β for E6/GD/PMF,
// sign/nearest level for BC, identity for float and E7 tanh, Σ q u for E7 softmax.
void primal_from_stored(const Method& method, const Tensor& stored, float beta, Tensor& primal);
// E11 for a parameter: tanh family/BC round the primal, float copies it, softmax rounds stored.
Tensor rounded_from(const Method& method, const Tensor& stored, const Tensor& primal);

}  // namespace mdq::quant

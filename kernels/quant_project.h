// Launchers of the quantizer's projection kernels (kernels/quant_project.cu): primal from the
// stored variable (E1–E3, or identity for float/E7), projection backward (the GD-tanh and PMF
// Jacobians, E9) and rounding (E11). Device pointers; work on mdq::cuda::stream().
// CPU reference: engine/quant/projection.cpp. Softmax-family arrays are levels planes of n.
#pragma once
#include <cstdint>

#include "kernels/quant_math.h"

namespace mdq::kernels {

// x[i] from the stored variable, as the rule reads it (tanh_primal / softmax_primal).
void quant_primal(quant::Rule rule, int levels, const float* stored, float beta, float* primal, int64_t n);
// ∂L/∂x̃ = P'_β(x̃) ∂L/∂x for the tanh projection (E1, E2); n weights.
void tanh_project_backward(int levels, const float* dual, const float* grad, float beta, float* grad_dual, int64_t n);
// ∂L/∂ũ_λ = β u_λ (q_λ − x) ∂L/∂x for the softmax projection (E3); logits and grad_logits are planes.
void softmax_project_backward(int levels, const float* logits, const float* grad, float beta, float* grad_logits,
                              int64_t n);
// E11: tanh family, BC and float round the primal (nearest level; float copies); softmax family
// takes q_argmax of the stored planes. Reads primal or stored as the rule needs.
void quant_round(quant::Rule rule, int levels, const float* stored, const float* primal, float* rounded, int64_t n);

}  // namespace mdq::kernels

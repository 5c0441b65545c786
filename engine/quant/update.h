// One fused quantizer step on tensors (DESIGN.md E6–E9 with the E8 direction): the CPU
// reference loop, or the CUDA kernel of kernels/quant_update.cu, over the same per-element math.
#pragma once
#include "engine/quant/method.h"
#include "engine/tensor.h"

namespace mdq::quant {

// Reads stored, grad (= ∂L/∂x, the shape of primal) and the moments; writes stored, the
// moments and primal. Tanh family: stored, m, v have primal's shape; softmax: [levels, *shape].
// m must be defined iff uses_m(dir), v iff uses_v(dir). All on one device.
void step_tensors(const Method& method, Dir dir, const StepArgs& args, Tensor& stored, const Tensor& grad, Tensor& m,
                  Tensor& v, Tensor& primal);

}  // namespace mdq::quant

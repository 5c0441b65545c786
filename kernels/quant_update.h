// Launcher of the fused quantizer step (kernels/quant_update.cu): E6–E9 with the E8 direction
// in one pass. Pointers are device pointers; work is queued on mdq::cuda::stream().
// CPU reference: engine/quant/update.cpp (same per-element math, kernels/quant_math.h).
#pragma once
#include <cstdint>

#include "kernels/quant_math.h"

namespace mdq::kernels {

// One step of n weights. Tanh family: stored, m, v hold n floats. Softmax family: stored, m, v
// hold levels planes of n floats (plane λ at λ·n). m is read only when uses_m(dir), v only when
// uses_v(dir); they may be null otherwise. primal (n floats) is written, never read, and may
// alias stored for the rules whose stored variable is the primal (Float, MdTanh).
// float4 accesses when every pointer is 16-byte aligned (and, for softmax planes, n % 4 == 0).
void quant_step(quant::Rule rule, quant::Dir dir, int levels, const quant::StepArgs& args, float* stored,
                const float* grad, float* m, float* v, float* primal, int64_t n);

}  // namespace mdq::kernels

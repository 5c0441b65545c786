// Launchers for the fused optimizer steps (kernels/optim.cu), DESIGN.md E8. Pointers are device
// pointers; work is queued on mdq::cuda::stream(). One pass per parameter: Adam reads w, g, m, v
// and writes w, m, v; SGD reads w, g, buf and writes w, buf. float4 loads when all pointers are
// 16-byte aligned, scalar otherwise and for the tail. The per-element math lives in
// kernels/adam_math.h and kernels/sgd_math.h; CPU references: engine/optim/{adam,sgd}.cpp.
#pragma once
#include <cstdint>

#include "kernels/adam_math.h"
#include "kernels/sgd_math.h"

namespace mdq::kernels {

// w -= lr * adam_direction(g + weight_decay * w, m, v, a), elementwise over n.
void adam_step_f32(float* w, const float* g, float* m, float* v, int64_t n, float lr, float weight_decay,
                   const AdamMoments& a);

// w -= lr * sgd_direction(g + weight_decay * w, buf, momentum, nesterov, first_step), elementwise.
// buf may be null when momentum is 0.
void sgd_step_f32(float* w, const float* g, float* buf, int64_t n, float lr, float weight_decay, float momentum,
                  bool nesterov, bool first_step);

}  // namespace mdq::kernels

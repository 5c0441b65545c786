// Elementwise passes on bf16 activations (the bf16 NHWC training path, docs/DESIGN.md §2):
// every element widened to f32 (exact), the f32 math of elementwise.h / activation.h, one
// rounding to bf16 (nearest even) at the end. The layout does not matter to them: both operands
// have the same one. Device pointers, queued on mdq::cuda::stream(); out may alias a or x (in
// place). CPU references: engine/ops/elementwise.cpp and engine/ops/activation.cpp.
#pragma once
#include <cstdint>

#include "kernels/activation.h"
#include "kernels/elementwise.h"

namespace mdq::kernels {

// out[i] = bf16(binary_op(op, a[i], b[i]))
void binary_bf16(BinaryOp op, const uint16_t* a, const uint16_t* b, uint16_t* out, int64_t n);
// out[i] = bf16(activation_value(act, x[i])) (exact for relu, relu6 and sign: the value is x, 0,
// 6 or ±1)
void activation_forward_bf16(Activation act, const uint16_t* x, uint16_t* out, int64_t n);
// grad_in[i] = bf16(activation_grad(act, grad_out[i], x[i]))
void activation_backward_bf16(Activation act, const uint16_t* grad_out, const uint16_t* x, uint16_t* grad_in,
                              int64_t n);

}  // namespace mdq::kernels

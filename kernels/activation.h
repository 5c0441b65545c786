// Launchers for the activation kernels (kernels/activation.cu): relu, relu6 and the binary
// sign with its clipped straight-through gradient. Device pointers, queued on
// mdq::cuda::stream(). CPU reference: engine/ops/activation.cpp (same formulas, same kinks).
#pragma once
#include <cstdint>

namespace mdq::kernels {

enum class Activation { ReLU, ReLU6, SignSTE };

// out[i] = act(x[i])
void activation_forward_f32(Activation act, const float* x, float* out, int64_t n);
// grad_in[i] = grad_out[i] * act'(x[i]) (the derivative rules are in engine/ops/activation.h)
void activation_backward_f32(Activation act, const float* grad_out, const float* x, float* grad_in, int64_t n);

}  // namespace mdq::kernels

// Launchers for the activation kernels (kernels/activation.cu): relu, relu6 and the binary
// sign with its clipped straight-through gradient. Device pointers, queued on
// mdq::cuda::stream(). The per-element math below is the one source of every activation rule:
// the CPU reference (engine/ops/activation.cpp), the kernels, and the ReLUs fused into batch norm
// (kernels/batchnorm.cu, engine/ops/batchnorm.cpp) and into the residual sum (elementwise.h).
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/host_device.h"

namespace mdq::kernels {

enum class Activation { ReLU, ReLU6, SignSTE };

// NaN passes through relu/relu6 (NaN < 0 is false), so a diverging run shows NaN, not 0.
MDQ_HD float activation_value(Activation act, float x) {
  switch (act) {
    case Activation::ReLU: return x < 0.f ? 0.f : x;
    case Activation::ReLU6: return x < 0.f ? 0.f : (x > 6.f ? 6.f : x);
    case Activation::SignSTE: return x < 0.f ? -1.f : (x >= 0.f ? 1.f : x);  // sign(0) = +1; NaN stays NaN
  }
  return x;
}

// g times the derivative at x: subgradient 0 at the kinks (relu at 0, relu6 at 0 and 6); the
// sign's straight-through estimator passes g where |x| <= 1 (E9).
MDQ_HD float activation_grad(Activation act, float g, float x) {
  switch (act) {
    case Activation::ReLU: return x > 0.f ? g : 0.f;
    case Activation::ReLU6: return (x > 0.f && x < 6.f) ? g : 0.f;
    case Activation::SignSTE: return fabsf(x) <= 1.f ? g : 0.f;
  }
  return g;
}

// out[i] = act(x[i])
void activation_forward_f32(Activation act, const float* x, float* out, int64_t n);
// grad_in[i] = grad_out[i] * act'(x[i]) (the derivative rules are in engine/ops/activation.h)
void activation_backward_f32(Activation act, const float* grad_out, const float* x, float* grad_in, int64_t n);

}  // namespace mdq::kernels

// Per-element Adam math (DESIGN.md E8), shared by the CPU reference (engine/optim/adam.cpp),
// the fused CUDA step (kernels/optim.cu) and the MD quantizer's dual update, so the host and
// device paths evaluate the same expressions in the same order and cannot drift apart.
#pragma once
#include <math.h>

#include <cmath>

#include "kernels/optim_math.h"

namespace mdq {

// The hyper-parameters one Adam step needs. bc1 = 1 - beta1^t and bc2 = 1 - beta2^t are the bias
// corrections for step t (t counts from 1); the host computes them once per step (in double,
// see adam_moments) so no device pow() enters the comparison with the CPU.
struct AdamMoments {
  float beta1, beta2, eps;
  float bc1, bc2;
};

// Updates the moments m, v with gradient g in place and returns the E8 direction
// d = m_hat / (sqrt(v_hat) + eps), m_hat = m / bc1, v_hat = v / bc2. The caller steps w -= lr * d.
MDQ_HD inline float adam_direction(float g, float& m, float& v, float b1, float b2, float eps, float bc1,
                                   float bc2) {
  m = b1 * m + (1.0f - b1) * g;
  v = b2 * v + (1.0f - b2) * (g * g);
  const float m_hat = m / bc1;
  const float v_hat = v / bc2;
  return m_hat / (sqrtf(v_hat) + eps);
}

MDQ_HD inline float adam_direction(float g, float& m, float& v, const AdamMoments& a) {
  return adam_direction(g, m, v, a.beta1, a.beta2, a.eps, a.bc1, a.bc2);
}

// Bias corrections for step t >= 1 (host only).
inline AdamMoments adam_moments(float beta1, float beta2, float eps, long long t) {
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(t));
  return AdamMoments{beta1, beta2, eps, static_cast<float>(bc1), static_cast<float>(bc2)};
}

}  // namespace mdq

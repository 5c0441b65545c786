// Adam with bias correction and L2 weight decay, PyTorch semantics (DESIGN.md E8: the direction
// is m_hat / (sqrt(v_hat) + eps)). CUDA: one fused pass per parameter, kernels/optim.cu.
#pragma once
#include "engine/optim/optimizer.h"

namespace mdq::optim {

struct AdamOptions {
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0;
};

// Per parameter with a grad, at its t-th update: g += weight_decay * w; m = b1 m + (1-b1) g;
// v = b2 v + (1-b2) g^2; w -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps). The moments
// are created (zero) at construction on each parameter's device.
class Adam : public Optimizer {
 public:
  Adam(std::vector<nn::ParamRef> params, AdamOptions o = {});
  void step(float lr) override;
  int64_t steps() const;  // step() calls so far (restored with the state)
  // Adds "optim.exp_avg.<name>" (m) and "optim.exp_avg_sq.<name>" (v) per parameter.
  std::vector<std::pair<std::string, Tensor*>> state() override;
  const AdamOptions& options() const { return options_; }

 private:
  AdamOptions options_;
  std::vector<Tensor> m_, v_;
};

}  // namespace mdq::optim

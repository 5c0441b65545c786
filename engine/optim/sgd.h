// SGD with optional momentum, Nesterov momentum and L2 weight decay, PyTorch semantics
// (DESIGN.md E8: the direction is g, or its momentum average). CUDA: kernels/optim.cu.
#pragma once
#include "engine/optim/optimizer.h"

namespace mdq::optim {

struct SGDOptions {
  float momentum = 0, weight_decay = 0;
  bool nesterov = false;
};

// Per parameter with a grad: g += weight_decay * w; buf = momentum * buf + g (buf = g on the
// parameter's first update); d = nesterov ? g + momentum * buf : buf (d = g without momentum);
// w -= lr * d. Momentum buffers are created at construction on each parameter's device.
class SGD : public Optimizer {
 public:
  SGD(std::vector<nn::ParamRef> params, SGDOptions o = {});
  void step(float lr) override;
  // Adds "optim.momentum_buffer.<name>" per parameter when momentum is on.
  std::vector<std::pair<std::string, Tensor*>> state() override;
  const SGDOptions& options() const { return options_; }

 private:
  SGDOptions options_;
  std::vector<Tensor> buffers_;  // one per parameter when momentum != 0, else empty
};

}  // namespace mdq::optim

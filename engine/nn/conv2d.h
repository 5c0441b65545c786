// The differentiable 2-D convolution on Vars and the Conv2d layer that owns its weight (and
// optional bias). Tensor math: engine/ops/conv2d.h.
#pragma once
#include <cstdint>

#include "engine/nn/module.h"
#include "engine/ops/conv2d.h"

namespace mdq::nn {

// y = conv2d(x, w) + bias; bias may be an undefined Var() for no bias.
Var conv2d(const Var& x, const Var& w, const Var& bias, const ops::Conv2dParams& p);

// A convolution layer: weight [out, in/groups, kernel, kernel], Xavier-uniform like PyTorch's
// xavier_uniform_ (the reference recipe's init, DESIGN.md §1); bias zeros when asked for.
// Parameters live on the CPU at construction; Module::to moves them.
class Conv2d : public Module {
 public:
  Conv2d(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t padding = 0, int64_t groups = 1,
         bool bias = false, uint64_t seed = 0);
  Var forward(const Var& x) override;
  Var weight() const { return weight_; }
  Var bias() const { return bias_; }  // undefined Var() when the layer has no bias
  const ops::Conv2dParams& params() const { return params_; }

 private:
  ops::Conv2dParams params_;
  Var weight_, bias_;
};

}  // namespace mdq::nn

// Fully connected layer: y = x wᵀ + b, as a differentiable function and as a Module.
#pragma once
#include <cstdint>

#include "engine/nn/module.h"

namespace mdq::nn {

// x [N, in], w [out, in], bias [out] or an undefined Var() for none -> [N, out].
// Backward: dx = g w, dw = gᵀ x, dbias = sum over rows of g.
Var linear(const Var& x, const Var& w, const Var& bias);

// Parameters "weight" [out, in] (ParamKind::Weight, fan_in = in, fan_out = out) with
// Xavier-uniform init, bound sqrt(6 / (in + out)) drawn by Tensor::uniform(seed), and "bias"
// [out] (ParamKind::Bias), zeros, when bias is true. Parameters start on the CPU; Module::to
// moves them.
class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias = true, uint64_t seed = 0);
  Var forward(const Var& x) override;
  Var weight() const { return weight_; }
  Var bias() const { return bias_; }  // undefined when built without a bias
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

 private:
  int64_t in_, out_;
  Var weight_, bias_;
};

}  // namespace mdq::nn

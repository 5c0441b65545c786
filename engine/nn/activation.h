// Differentiable activations and their modules: relu, relu6 and the binary sign with the
// clipped straight-through gradient (E9) for fully binary nets. Rules: engine/ops/activation.h.
#pragma once
#include "engine/nn/module.h"

namespace mdq::nn {

Var relu(const Var& x);   // max(x, 0); gradient 1[x > 0] (0 at the kink)
Var relu6(const Var& x);  // min(max(x, 0), 6); gradient 1[0 < x < 6] (0 at both kinks)
// Binary activation (BNN/XNOR style): forward sign(x) with sign(0) = +1,
// backward g * 1[|x| <= 1] (straight-through, clipped).
Var sign_ste(const Var& x);

class ReLU : public Module {
 public:
  ReLU() = default;
  Var forward(const Var& x) override { return relu(x); }
};

class ReLU6 : public Module {
 public:
  ReLU6() = default;
  Var forward(const Var& x) override { return relu6(x); }
};

class SignSTE : public Module {
 public:
  SignSTE() = default;
  Var forward(const Var& x) override { return sign_ste(x); }
};

}  // namespace mdq::nn

// Differentiable operations on Vars. Each records one backward closure on the tape when its
// inputs need grad (engine/autograd.h). The tensor math lives in engine/ops/.
#pragma once
#include "engine/autograd.h"

namespace mdq::nn {

// The output Var of an op: requires grad when any of the inputs does and grad is enabled.
Var make_output(Tensor value, std::initializer_list<const Var*> inputs);

Var add(const Var& a, const Var& b);
// relu(a + b) in one pass (a residual block's sum and activation); gradient 1[a + b > 0] to both,
// read from the output (y > 0 exactly where a + b > 0).
Var add_relu(const Var& a, const Var& b);
Var sub(const Var& a, const Var& b);
Var mul(const Var& a, const Var& b);
Var scale(const Var& a, float s);
Var sum(const Var& a);  // sum of all elements, one-element result

}  // namespace mdq::nn

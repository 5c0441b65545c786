// Differentiable operations on Vars. Each records one backward closure on the tape when its
// inputs need grad (engine/autograd.h). The tensor math lives in engine/ops/.
#pragma once
#include "engine/autograd.h"

namespace mdq::nn {

// The output Var of an op: requires grad when any of the inputs does and grad is enabled.
Var make_output(Tensor value, std::initializer_list<const Var*> inputs);

Var add(const Var& a, const Var& b);
Var sub(const Var& a, const Var& b);
Var mul(const Var& a, const Var& b);
Var scale(const Var& a, float s);
Var sum(const Var& a);  // sum of all elements, one-element result

}  // namespace mdq::nn

// Shape-only layers: reshape and flatten share the input's storage; backward reshapes back.
#pragma once
#include "engine/nn/module.h"

namespace mdq::nn {

// Same elements, new shape (one dim may be -1); the gradient is reshaped to the input's shape.
Var reshape(const Var& x, const Shape& shape);

// [N, d1, d2, ...] -> [N, d1*d2*...] (a 1-d [N] becomes [N, 1]).
Var flatten(const Var& x);

class Flatten : public Module {
 public:
  Var forward(const Var& x) override { return flatten(x); }
};

}  // namespace mdq::nn

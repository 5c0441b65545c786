// Autograd wrappers for the activations: each saves its input x, from which the backward mask
// (1[x > 0], 1[0 < x < 6], 1[|x| <= 1]) is rebuilt.
#include "engine/nn/activation.h"

#include "engine/nn/functional.h"
#include "engine/nn/layout.h"
#include "engine/ops/activation.h"

namespace mdq::nn {
namespace {

using Forward = Tensor (*)(const Tensor&);
using Backward = Tensor (*)(const Tensor&, const Tensor&);

Var activation(const Var& x_any, Forward forward, Backward backward) {
  const Var x = as_nchw_f32(x_any);
  Var out = make_output(forward(x.value()), {&x});
  if (out.requires_grad())
    record_backward([x, out = GradRef(out), backward]() {
      if (out.has_grad()) x.accumulate_grad(backward(out.grad(), x.value()));
    });
  return out;
}

}  // namespace

Var relu(const Var& x) { return activation(x, ops::relu_forward, ops::relu_backward); }
Var relu6(const Var& x) { return activation(x, ops::relu6_forward, ops::relu6_backward); }
Var sign_ste(const Var& x) { return activation(x, ops::sign_forward, ops::sign_ste_backward); }

}  // namespace mdq::nn

// Autograd wrappers for the activations: each saves its input x, from which the backward mask
// (1[x > 0], 1[0 < x < 6], 1[|x| <= 1]) is rebuilt. Elementwise, so they take either activation
// form (engine/ops/layout.h) as it is: an NHWC bf16 input stays NHWC bf16, with no conversion.
#include "engine/nn/activation.h"

#include "engine/nn/functional.h"
#include "engine/ops/activation.h"

namespace mdq::nn {
namespace {

using Forward = Tensor (*)(const Tensor&);
using Backward = Tensor (*)(const Tensor&, const Tensor&);

Var activation(const Var& x, Forward forward, Backward backward) {
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

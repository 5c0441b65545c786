#include "engine/nn/layout.h"

#include "engine/nn/functional.h"
#include "engine/ops/layout.h"

namespace mdq::nn {

namespace {
// y = there(x); the gradient goes back through the opposite change.
Var change_layout(const Var& x, Tensor (*there)(const Tensor&), Tensor (*back)(const Tensor&)) {
  Var out = make_output(there(x.value()), {&x});
  if (out.requires_grad())
    record_backward([x = GradRef(x), out = GradRef(out), back]() {
      if (out.has_grad()) x.accumulate_grad(back(out.grad()));
    });
  return out;
}
}  // namespace

Var to_nhwc_bf16(const Var& x) { return change_layout(x, ops::to_nhwc_bf16, ops::to_nchw_f32); }
Var to_nchw_f32(const Var& x) { return change_layout(x, ops::to_nchw_f32, ops::to_nhwc_bf16); }

Var as_nchw_f32(const Var& x) { return ops::is_nhwc_bf16(x.value()) ? to_nchw_f32(x) : x; }
Var as_nhwc_bf16(const Var& x) { return ops::is_nhwc_bf16(x.value()) ? x : to_nhwc_bf16(x); }

}  // namespace mdq::nn

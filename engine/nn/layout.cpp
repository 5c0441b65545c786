#include "engine/nn/layout.h"

#include "engine/nn/functional.h"
#include "engine/ops/layout.h"

namespace mdq::nn {

Var to_nhwc_bf16(const Var& x) {
  Var out = make_output(ops::to_nhwc_bf16(x.value()), {&x});
  if (out.requires_grad())
    record_backward([x = GradRef(x), out = GradRef(out)]() {
      if (out.has_grad()) x.accumulate_grad(ops::to_nchw_f32(out.grad()));
    });
  return out;
}

Var to_nchw_f32(const Var& x) {
  Var out = make_output(ops::to_nchw_f32(x.value()), {&x});
  if (out.requires_grad())
    record_backward([x = GradRef(x), out = GradRef(out)]() {
      if (out.has_grad()) x.accumulate_grad(ops::to_nhwc_bf16(out.grad()));
    });
  return out;
}

Var as_nchw_f32(const Var& x) { return ops::is_nhwc_bf16(x.value()) ? to_nchw_f32(x) : x; }
Var as_nhwc_bf16(const Var& x) { return ops::is_nhwc_bf16(x.value()) ? x : to_nhwc_bf16(x); }

}  // namespace mdq::nn

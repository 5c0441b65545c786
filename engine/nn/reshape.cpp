#include "engine/nn/reshape.h"

#include "engine/nn/functional.h"
#include "engine/nn/layout.h"

namespace mdq::nn {

Var reshape(const Var& x_any, const Shape& shape) {
  const Var x = as_nchw_f32(x_any);  // the order a reshape reads is NCHW's
  Var out = make_output(x.value().reshape(shape), {&x});
  if (out.requires_grad())
    record_backward([x = GradRef(x), shape = x.shape(), out = GradRef(out)]() {
      if (out.has_grad()) x.accumulate_grad(out.grad().reshape(shape));
    });
  return out;
}

Var flatten(const Var& x) {
  const Tensor& v = x.value();
  MDQ_CHECK(v.ndim() >= 1, "flatten: expected at least one (batch) dimension, got " << v.describe());
  return reshape(x, {v.dim(0), v.ndim() == 1 ? 1 : shape_numel(Shape(v.shape().begin() + 1, v.shape().end()))});
}

}  // namespace mdq::nn

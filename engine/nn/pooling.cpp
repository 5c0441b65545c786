// Autograd wrappers for pooling. Max pooling keeps the argmax indices from its forward pass, so
// backward never compares floats again (ties and NaNs route exactly as the forward chose).
#include "engine/nn/pooling.h"

#include "engine/nn/functional.h"
#include "engine/nn/layout.h"
#include "engine/ops/pooling.h"

namespace mdq::nn {

Var max_pool2d(const Var& x_any, int64_t kernel, int64_t stride, int64_t padding) {
  const Var x = as_nchw_f32(x_any);
  ops::MaxPool2dResult r = ops::max_pool2d_forward(x.value(), kernel, stride, padding);
  Var out = make_output(r.out, {&x});
  if (out.requires_grad()) {
    Tensor argmax = r.argmax;
    record_backward([x = GradRef(x), shape = x.shape(), out = GradRef(out), argmax, kernel, stride, padding]() {
      if (out.has_grad())
        x.accumulate_grad(ops::max_pool2d_backward(out.grad(), argmax, shape, kernel, stride, padding));
    });
  }
  return out;
}

Var avg_pool2d(const Var& x_any, int64_t kernel, int64_t stride, int64_t padding) {
  const Var x = as_nchw_f32(x_any);
  Var out = make_output(ops::avg_pool2d_forward(x.value(), kernel, stride, padding), {&x});
  if (out.requires_grad())
    record_backward([x = GradRef(x), shape = x.shape(), out = GradRef(out), kernel, stride, padding]() {
      if (out.has_grad()) x.accumulate_grad(ops::avg_pool2d_backward(out.grad(), shape, kernel, stride, padding));
    });
  return out;
}

Var global_avg_pool(const Var& x_any) {
  const Var x = as_nchw_f32(x_any);
  Var out = make_output(ops::global_avg_pool_forward(x.value()), {&x});
  if (out.requires_grad())
    record_backward([x = GradRef(x), shape = x.shape(), out = GradRef(out)]() {
      if (out.has_grad()) x.accumulate_grad(ops::global_avg_pool_backward(out.grad(), shape));
    });
  return out;
}

}  // namespace mdq::nn

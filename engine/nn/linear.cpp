#include "engine/nn/linear.h"

#include <cmath>

#include "engine/nn/functional.h"
#include "engine/ops/matmul.h"

namespace mdq::nn {

Var linear(const Var& x, const Var& w, const Var& bias) {
  const Tensor& xv = x.value();
  const Tensor& wv = w.value();
  MDQ_CHECK(xv.ndim() == 2 && wv.ndim() == 2 && xv.dim(1) == wv.dim(1),
            "linear: expected x [N, in] and weight [out, in], got " << xv.describe() << " vs " << wv.describe());
  if (bias.defined())
    MDQ_CHECK(bias.value().ndim() == 1 && bias.value().dim(0) == wv.dim(0),
              "linear: bias " << bias.value().describe() << " does not match weight " << wv.describe());
  Tensor y = ops::matmul(xv, wv, false, true);
  if (bias.defined()) y = ops::add_row_vector(y, bias.value());
  Var out = make_output(std::move(y), {&x, &w, &bias});
  if (out.requires_grad())
    record_backward([x, w, bias, out = GradRef(out)]() {
      if (!out.has_grad()) return;
      const Tensor& g = out.grad();  // [N, out]
      if (x.requires_grad()) x.accumulate_grad(ops::matmul(g, w.value()));              // [N, in]
      if (w.requires_grad()) w.accumulate_grad(ops::matmul(g, x.value(), true, false));  // [out, in]
      if (bias.requires_grad()) bias.accumulate_grad(ops::sum_rows(g));                  // [out]
    });
  return out;
}

Linear::Linear(int64_t in, int64_t out, bool bias, uint64_t seed) : in_(in), out_(out) {
  MDQ_CHECK(in > 0 && out > 0, "Linear: sizes must be positive, got in " << in << ", out " << out);
  const float bound = std::sqrt(6.0f / static_cast<float>(in + out));  // Xavier-uniform
  weight_ = register_parameter("weight", Tensor::uniform({out, in}, -bound, bound, seed), ParamKind::Weight, in, out);
  if (bias) bias_ = register_parameter("bias", Tensor::zeros({out}), ParamKind::Bias, in, out);
}

Var Linear::forward(const Var& x) { return linear(x, weight_, bias_); }

}  // namespace mdq::nn

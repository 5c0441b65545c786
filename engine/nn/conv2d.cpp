// Differentiable conv2d (one tape entry for x, w and bias) and the Conv2d layer.
#include "engine/nn/conv2d.h"

#include <cmath>
#include <utility>

#include "engine/nn/functional.h"
#include "engine/nn/layout.h"
#include "engine/ops/layout.h"

namespace mdq::nn {

// Two forms (engine/ops/layout.h): under bf16 activations NHWC bf16 in and out, x converted once
// if it came as NCHW f32 (a network's image); otherwise NCHW f32 (fp32, tf32, the CPU). Either
// way the backward reads x itself: on the bf16 path x is already the bf16 copy cuDNN reads.
Var conv2d(const Var& x_any, const Var& w, const Var& bias, const ops::Conv2dParams& p) {
  const bool nhwc = ops::nhwc_bf16_activations(x_any.value().device());
  const Var x = nhwc ? as_nhwc_bf16(x_any) : as_nchw_f32(x_any);
  const Tensor b = bias.defined() ? bias.value() : Tensor();
  // On the GPU's bf16 path the weight's bf16 filter is made once, for the forward and for the
  // backward-data pass (engine/ops/conv2d.h, conv2d_filter).
  const Tensor filter = nhwc ? ops::conv2d_filter(x.value(), w.value(), p) : Tensor();
  // needs_grad ignores an undefined bias (requires_grad() is false for it).
  Var out = make_output(ops::conv2d_forward(x.value(), w.value(), b, p, filter), {&x, &w, &bias});
  if (out.requires_grad())
    record_backward([x, w, bias, out = GradRef(out), p, nhwc, filter = x.requires_grad() ? filter : Tensor()]() {
      if (!out.has_grad()) return;
      const Tensor& dy = out.grad();
      // NCHW f32: where x already has a gradient (it feeds a residual's shortcut too), dx is
      // summed into it by the backward-data pass itself rather than by a pass of its own. NHWC
      // bf16 hands dx to autograd, which sums in bf16.
      ops::Conv2dGrads g;
      auto grads = [&](Tensor* sum) {
        g = ops::conv2d_backward(dy, x.value(), w.value(), p, x.requires_grad(), w.requires_grad(), sum, filter);
      };
      const bool summed = !nhwc && x.requires_grad() && x.add_into_grad([&](Tensor& sum) { grads(&sum); });
      if (!summed) grads(nullptr);
      if (x.requires_grad() && !summed) x.accumulate_grad(std::move(g.input));
      if (w.requires_grad()) w.accumulate_grad(std::move(g.weight));
      if (bias.requires_grad()) bias.accumulate_grad(ops::conv2d_backward_bias(dy));
    });
  return out;
}

Conv2d::Conv2d(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding, int64_t groups, bool bias,
               uint64_t seed)
    : params_{stride, padding, groups} {
  MDQ_CHECK(in >= 1 && out >= 1 && kernel >= 1 && groups >= 1,
            "Conv2d: needs in, out, kernel, groups >= 1; got in " << in << ", out " << out << ", kernel " << kernel
                                                                  << ", groups " << groups);
  MDQ_CHECK(in % groups == 0 && out % groups == 0,
            "Conv2d: groups " << groups << " must divide both in (" << in << ") and out (" << out << ") channels");
  MDQ_CHECK(stride >= 1 && padding >= 0, "Conv2d: needs stride >= 1 and padding >= 0; got stride " << stride
                                                                                                 << ", padding " << padding);
  // PyTorch's xavier_uniform_ on a [O, C/groups, K, K] weight: fan_in = C/groups*K*K, fan_out = O*K*K.
  const int64_t fan_in = in / groups * kernel * kernel, fan_out = out * kernel * kernel;
  const float bound = static_cast<float>(std::sqrt(6.0 / static_cast<double>(fan_in + fan_out)));
  weight_ = register_parameter("weight", Tensor::uniform({out, in / groups, kernel, kernel}, -bound, bound, seed),
                               ParamKind::Weight, fan_in, fan_out);
  if (bias) bias_ = register_parameter("bias", Tensor::zeros({out}), ParamKind::Bias, fan_in, fan_out);
}

Var Conv2d::forward(const Var& x) { return conv2d(x, weight_, bias_, params_); }

}  // namespace mdq::nn

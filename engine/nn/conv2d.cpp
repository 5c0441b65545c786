// Differentiable conv2d (one tape entry for x, w and bias) and the Conv2d layer.
#include "engine/nn/conv2d.h"

#include <cmath>
#include <utility>

#include "engine/nn/functional.h"

namespace mdq::nn {

Var conv2d(const Var& x, const Var& w, const Var& bias, const ops::Conv2dParams& p) {
  const Tensor b = bias.defined() ? bias.value() : Tensor();
  // Under BF16 on the GPU the forward's bf16 NHWC copy of x is kept for the weight gradient,
  // which would otherwise convert x again: one transpose per convolution and step fewer. The
  // backward then reads no f32 x, so it holds x's gradient only (GradRef), and x's f32 value is
  // freed once the forward code no longer needs it: 2 bytes per element kept instead of 4. Kept
  // only when dw will be computed (w needs grad and grad is on); undefined where the forward makes
  // no copy, and then the backward holds x and converts it.
  Tensor x_bf16;
  const bool keep = grad_enabled() && w.requires_grad();
  // needs_grad ignores an undefined bias (requires_grad() is false for it).
  Var out = make_output(ops::conv2d_forward(x.value(), w.value(), b, p, keep ? &x_bf16 : nullptr), {&x, &w, &bias});
  if (out.requires_grad())
    record_backward([x = GradRef(x), x_value = x_bf16.defined() ? Tensor() : x.value(), w, bias, out = GradRef(out), p,
                     x_bf16]() mutable {
      // The copy is released as soon as this runs, not when the tape is cleared.
      const Tensor x_copy = std::move(x_bf16);
      if (!out.has_grad()) return;
      const Tensor& dy = out.grad();
      // Where x already has a gradient (it feeds a residual's shortcut too), dx is summed into it
      // by the pass that converts it back from bf16 rather than by a pass of its own.
      ops::Conv2dGrads g;
      auto grads = [&](Tensor* sum) {
        g = ops::conv2d_backward(dy, x_value, w.value(), p, x.requires_grad(), w.requires_grad(), x_copy, sum);
      };
      const bool summed = x.requires_grad() && x.add_into_grad([&](Tensor& sum) { grads(&sum); });
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

// Autograd wrapper for batch normalisation and the BatchNorm2d module.
#include "engine/nn/batchnorm.h"

#include <utility>

#include "engine/nn/functional.h"
#include "engine/nn/layout.h"
#include "engine/ops/layout.h"
#include "engine/ops/batchnorm.h"

namespace mdq::nn {
namespace {
TrainingBatchNorm& training_batch_norm() {
  static TrainingBatchNorm f;
  return f;
}
}  // namespace

void set_training_batch_norm(TrainingBatchNorm f) { training_batch_norm() = std::move(f); }

Var batch_norm(const Var& x, const Var& weight, const Var& bias, Tensor& running_mean, Tensor& running_var,
               bool training, float momentum, float eps, bool relu) {
  const Tensor w = weight.defined() ? weight.value() : Tensor();
  const Tensor b = bias.defined() ? bias.value() : Tensor();
  ops::BatchNormResult r =
      ops::batch_norm_forward(x.value(), w, b, running_mean, running_var, training, momentum, eps, relu);
  Var out = make_output(r.out, {&x, &weight, &bias});
  if (out.requires_grad()) {
    Tensor mean = r.mean, invstd = r.invstd;
    record_backward([x, weight, bias, out = GradRef(out), mean, invstd, training, relu]() {
      if (!out.has_grad()) return;
      const Tensor w = weight.defined() ? weight.value() : Tensor();
      const Tensor b = bias.defined() ? bias.value() : Tensor();
      ops::BatchNormGrads g = ops::batch_norm_backward(out.grad(), x.value(), w, b, mean, invstd, training, relu);
      if (x.requires_grad()) x.accumulate_grad(std::move(g.grad_input));
      if (weight.requires_grad()) weight.accumulate_grad(std::move(g.grad_weight));
      if (bias.requires_grad()) bias.accumulate_grad(std::move(g.grad_bias));
    });
  }
  return out;
}

BatchNorm2d::BatchNorm2d(int64_t channels, bool affine, float momentum, float eps)
    : channels_(channels), affine_(affine), momentum_(momentum), eps_(eps) {
  MDQ_CHECK(channels > 0, "BatchNorm2d: channels must be positive, got " << channels);
  running_mean_ = &register_buffer("running_mean", Tensor::zeros({channels}));
  running_var_ = &register_buffer("running_var", Tensor::full({channels}, 1.0f));
  if (affine) {
    weight_ = register_parameter("weight", Tensor::full({channels}, 1.0f), ParamKind::Weight, 1, 1);
    bias_ = register_parameter("bias", Tensor::zeros({channels}), ParamKind::Bias, 1, 1);
  }
}

Var BatchNorm2d::forward(const Var& x) {
  MDQ_CHECK((x.value().ndim() == 4 || x.value().ndim() == 2) && ops::channels(x.value()) == channels_,
            "BatchNorm2d(" << channels_ << "): expected [N, " << channels_ << ", H, W] or [N, " << channels_
                           << "] (or an NHWC bf16 [N, H, W, " << channels_ << "]), got " << x.value().describe());
  if (is_training() && training_batch_norm())  // sync BN: NCHW f32
    return training_batch_norm()(as_nchw_f32(x), weight_, bias_, *running_mean_, *running_var_, momentum_, eps_, relu_);
  return batch_norm(x, weight_, bias_, *running_mean_, *running_var_, is_training(), momentum_, eps_, relu_);
}

}  // namespace mdq::nn

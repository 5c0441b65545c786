// Differentiable batch normalisation and the BatchNorm2d module (math: engine/ops/batchnorm.h).
// The paper's recipe uses BN without affine parameters (DESIGN.md §1), hence affine = false by
// default; running statistics follow PyTorch (unbiased running_var, momentum 0.1).
#pragma once
#include <functional>
#include <memory>

#include "engine/nn/activation.h"
#include "engine/nn/module.h"

namespace mdq::nn {

// x: [N, C, H, W] or [N, C]. weight/bias: [C] or undefined Var() (then 1 and 0).
// training: batch statistics, running_mean/running_var updated in place; backward goes through
// the batch mean and variance. eval: running statistics; backward is a per-channel scale.
// relu: relu(batch_norm(...)) in one op (engine/ops/batchnorm.h), no separate ReLU pass.
Var batch_norm(const Var& x, const Var& weight, const Var& bias, Tensor& running_mean, Tensor& running_var,
               bool training, float momentum, float eps, bool relu = false);

// Replaces batch_norm for every BatchNorm2d in training mode while set; an empty function restores
// it. Data-parallel runs with --sync-bn set the cross-rank version (engine/dist/sync_batchnorm.h).
using TrainingBatchNorm = std::function<Var(const Var& x, const Var& weight, const Var& bias, Tensor& running_mean,
                                            Tensor& running_var, float momentum, float eps, bool relu)>;
void set_training_batch_norm(TrainingBatchNorm f);

// Buffers "running_mean" (zeros) and "running_var" (ones); when affine, parameters "weight"
// (ones, ParamKind::Weight) and "bias" (zeros, ParamKind::Bias). Mode from is_training().
// Accepts [N, C, H, W] and [N, C] (e.g. VGG's classifier on [N, 512]).
class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t channels, bool affine = false, float momentum = 0.1f, float eps = 1e-5f);
  Var forward(const Var& x) override;

  // From now on forward returns relu(BN(x)), in training and eval; use fuse_relu_after (below),
  // which also leaves a ReLU module in the ReLU's place.
  void fuse_relu() { relu_ = true; }
  bool relu_fused() const { return relu_; }

  int64_t channels() const { return channels_; }
  bool affine() const { return affine_; }
  float eps() const { return eps_; }
  Var weight() const { return weight_; }  // undefined unless affine
  Var bias() const { return bias_; }
  Tensor& running_mean() { return *running_mean_; }
  Tensor& running_var() { return *running_var_; }

 private:
  int64_t channels_;
  bool affine_;
  float momentum_, eps_;
  bool relu_ = false;
  Var weight_, bias_;  // undefined unless affine
  Tensor* running_mean_;
  Tensor* running_var_;  // registered buffers: Module keeps them at stable addresses
};

// The ReLU after a BatchNorm2d that applies it itself (fuse_relu): forward returns its input,
// already relu(BN(x)). It stays a ReLU to whoever inspects the model (the inference lowering
// matches conv → BN → ReLU), and it keeps the ReLU's place, so module indices, and with them
// the parameter and buffer names in checkpoints, do not change. Correct only right after its
// BatchNorm2d, where fuse_relu_after puts it.
class ReLUFusedIntoBatchNorm : public ReLU {
 public:
  ReLUFusedIntoBatchNorm() = default;
  Var forward(const Var& x) override { return x; }
};

// Fuses the ReLU that follows bn into it; returns the module to add in the ReLU's place.
inline std::shared_ptr<Module> fuse_relu_after(BatchNorm2d& bn) {
  bn.fuse_relu();
  return std::make_shared<ReLUFusedIntoBatchNorm>();
}

}  // namespace mdq::nn

// Batch normalisation on f32 tensors, forward and backward, CPU or GPU (no autograd: see
// engine/nn/batchnorm.h). x is [N, C, H, W] or [N, C] (read as H = W = 1), or an NHWC bf16
// activation [N, H, W, C] (engine/ops/layout.h; out and grad_input then are too, with the
// statistics and sums f32: kernels/batchnorm.h); statistics are per channel over the
// M = N*H*W elements of that channel.
//   training: mean, var = batch mean and biased batch variance;
//             running_mean = (1 - momentum) running_mean + momentum mean,
//             running_var  = (1 - momentum) running_var  + momentum var * M / (M - 1)
//             (unbiased, PyTorch semantics); M must be > 1.
//   eval:     mean, var = running_mean, running_var (left unchanged).
//   out = (x - mean) * invstd * weight + bias, invstd = 1 / sqrt(var + eps);
//   an undefined weight means 1, an undefined bias 0 (the paper's BN has no affine parameters).
// Backward, with xhat = (x - mean) invstd and sums over the channel's M elements:
//   training: dx = weight invstd (g - sum(g)/M - xhat sum(g xhat)/M)  (through mean and var)
//   eval:     dx = weight invstd g                                     (mean, var are constants)
//   dweight = sum(g xhat), dbias = sum(g) in both modes.
// relu fuses the ReLU that follows: out = max(0, pre) with pre the output above, and backward
// takes g 1[pre > 0] for g everywhere (ReLU's gradient, 0 at the kink), pre recomputed from x,
// mean, invstd, weight and bias by the forward's own expression, so the mask is the forward's
// bit for bit on each backend (CPU: batch_norm_pre; CUDA: kernels/batchnorm.cu).
#pragma once
#include "engine/tensor.h"

namespace mdq::ops {

struct BatchNormResult {
  Tensor out;     // shape of x
  Tensor mean;    // [C]: the mean that normalised x (batch mean in training, running in eval)
  Tensor invstd;  // [C]: 1 / sqrt(var + eps) for that var; both are what backward needs
};
// running_mean/running_var: [C] f32 on x's device; updated in place in training (they may be
// undefined in training, then nothing is tracked; eval needs them).
BatchNormResult batch_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& running_mean,
                                   Tensor& running_var, bool training, float momentum, float eps, bool relu = false);

// The CPU reference's output before the ReLU, one element; w and b are 1 and 0 without affine
// parameters. Sync BN's CPU path (engine/dist/) uses it too, so its mask is this one.
inline float batch_norm_pre(float x, float mean, float invstd, float w, float b) { return (x - mean) * invstd * w + b; }

// The CPU reference's end of a training channel, from its double batch mean and biased variance
// over m values: mean[c], invstd[c] and (when running_mean is non-null) the running statistics.
// Shared with sync BN (engine/dist/sync_batchnorm.cpp), whose statistics must be these bit for bit.
void batch_norm_finish_channel(int64_t c, double mu, double var, double m, float momentum, float eps, float* mean,
                               float* invstd, float* running_mean, float* running_var);

struct BatchNormGrads {
  Tensor grad_input;   // shape of x
  Tensor grad_weight;  // [C], defined when weight is
  Tensor grad_bias;    // [C], defined when bias is
};
// mean/invstd: from the matching batch_norm_forward; `training` and `relu` must be the forward's.
BatchNormGrads batch_norm_backward(const Tensor& grad_out, const Tensor& x, const Tensor& weight, const Tensor& bias,
                                   const Tensor& mean, const Tensor& invstd, bool training, bool relu = false);

}  // namespace mdq::ops

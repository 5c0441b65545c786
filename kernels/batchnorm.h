// Launchers for the batch-norm kernels (kernels/batchnorm.cu). The input is viewed as
// [N, C, HW] (HW = 1 for [N, C] inputs); per-channel vectors are [C]; `weight` and `bias` may be
// null (no affine parameters: weight 1, bias 0); `running_mean`/`running_var` may be null (not
// tracked). Device pointers, queued on mdq::cuda::stream(). CPU reference and the math:
// engine/ops/batchnorm.{h,cpp}.
//
// relu fuses a ReLU after the normalisation: out = max(0, pre) with pre the plain output, and
// the backward passes run on g 1[pre > 0], pre recomputed from x by the apply kernel's own
// expression, so the mask is the forward's bit for bit and the output need not be kept.
#pragma once
#include <cstdint>

namespace mdq::kernels {

struct BatchNormShape {
  int64_t n, c, hw;
};

// ---- the op's forward and backward passes (engine/ops/batchnorm.cpp dispatches to these; its
// CPU reference takes the same arguments), made of the pieces below.
struct BatchNormForwardArgs {
  BatchNormShape s;
  bool training;
  float momentum, eps;
  const float* x;
  const float* weight;
  const float* bias;
  float* running_mean;  // training: updated (batch_norm_stats_f32); eval: read
  float* running_var;
  float* out;     // (x - mean[c]) * invstd[c] * weight[c] + bias[c], then max(0, .) when relu
  float* mean;    // [C]: the batch mean (training) or running_mean (eval)
  float* invstd;  // [C]: 1 / sqrt(var + eps) for that var
  bool relu;
};
void batch_norm_forward_f32(const BatchNormForwardArgs& a);

// sum_g and sum_gxhat ([C], dbias and dweight) are written when non-null; training needs them.
struct BatchNormBackwardArgs {
  BatchNormShape s;
  bool training;
  const float* grad_out;
  const float* x;
  const float* mean;
  const float* invstd;
  const float* weight;
  const float* bias;  // read only when relu (the mask)
  float* sum_g;
  float* sum_gxhat;
  float* grad_in;
  bool relu;  // the forward's: g becomes g 1[pre > 0] before everything below
};
void batch_norm_backward_f32(const BatchNormBackwardArgs& a);

// ---- NHWC bf16 activations (the bf16 training path, docs/DESIGN.md §2; kernels/batchnorm_nhwc.cu).
// x, out, grad_out and grad_in are bf16 [rows][C], rows = N*H*W, the channel innermost: the same
// math as above with M = rows, the statistics, the sums, weight and bias f32, each output
// rounded to bf16 once (round to nearest even) from its f32 value. Viewed as f32, [rows][C] is
// NCHW [rows, C, 1, 1], so the f32 CPU reference with BatchNormShape{rows, c, 1} on the widened
// values is this op's reference (engine/ops/batchnorm.cpp).
struct BatchNormNhwcForwardArgs {
  int64_t rows, c;
  bool training;
  float momentum, eps;
  const uint16_t* x;
  const float* weight;  // may be null (1)
  const float* bias;    // may be null (0)
  float* running_mean;  // training: updated, may be null (with running_var); eval: read
  float* running_var;
  uint16_t* out;
  float* mean;    // [C] out: batch mean (training) or running_mean (eval)
  float* invstd;  // [C] out
  bool relu;
};
void batch_norm_forward_nhwc_bf16(const BatchNormNhwcForwardArgs& a);
struct BatchNormNhwcBackwardArgs {
  int64_t rows, c;
  bool training;
  const uint16_t* grad_out;
  const uint16_t* x;
  const float* mean;
  const float* invstd;
  const float* weight;  // may be null
  const float* bias;    // read only when relu (the mask); may be null
  float* sum_g;         // [C] out when non-null (training needs them): dbias
  float* sum_gxhat;     // [C] out when non-null: dweight
  uint16_t* grad_in;
  bool relu;
};
void batch_norm_backward_nhwc_bf16(const BatchNormNhwcBackwardArgs& a);

// ---- the pieces (also sync BN's, engine/dist/)
// Training statistics, deterministic, on a (channel x chunk) grid (two passes: mean, then the
// centred sum of squares): mean[c], invstd[c] = 1/sqrt(var_biased + eps), and, when given,
// running = (1 - momentum) * running + momentum * batch with var_unbiased for running_var.
void batch_norm_stats_f32(const BatchNormShape& s, const float* x, float eps, float momentum, float* mean,
                          float* invstd, float* running_mean, float* running_var);
// Evaluation statistics: mean = running_mean, invstd = 1/sqrt(running_var + eps).
void batch_norm_eval_stats_f32(int64_t c, const float* running_mean, const float* running_var, float eps, float* mean,
                               float* invstd);
// out = pre = (x - mean[c]) * invstd[c] * weight[c] + bias[c]; max(0, pre) when relu
void batch_norm_apply_f32(const BatchNormShape& s, const float* x, const float* mean, const float* invstd,
                          const float* weight, const float* bias, bool relu, float* out);
// Per-channel sums for the backward pass, deterministic, on a (channel x chunk) grid:
// sum_g[c] = sum g, sum_gxhat[c] = sum g * (x - mean[c]) * invstd[c], with g 1[pre > 0] for g
// when relu (weight and bias are read for pre only then, and may be null).
void batch_norm_backward_reduce_f32(const BatchNormShape& s, const float* grad_out, const float* x, const float* mean,
                                    const float* invstd, const float* weight, const float* bias, bool relu,
                                    float* sum_g, float* sum_gxhat);
// grad_in = weight * invstd * (g - sum_g/M - xhat * sum_gxhat/M)   (training, M = N*HW)
// grad_in = weight * invstd * g                                   (eval; sums unused, may be null)
// with g 1[pre > 0] for g when relu.
void batch_norm_backward_input_f32(const BatchNormShape& s, bool training, const float* grad_out, const float* x,
                                   const float* mean, const float* invstd, const float* weight, const float* bias,
                                   bool relu, const float* sum_g, const float* sum_gxhat, float* grad_in);

// ---- sync BN (engine/dist/sync_batchnorm.h): statistics over several ranks' batches, from
// per-rank partial sums that the ranks all-reduce between these calls. The last entry of a
// [C + 1] partial vector is the element count M = N*HW, so summing the vectors sums the counts.
// partial[c] = sum x (center null), or sum (x - center[c] / center[C])^2 (center: the reduced
// first pass); partial[C] = M. The same fixed-order (channel x chunk) sums as above.
void sync_bn_partial_sums_f32(const BatchNormShape& s, const float* x, const float* center, float* partial);
// From reduced sums (count = sum[C]): mean = sum/count, invstd = 1/sqrt(sumsq/count + eps) and the
// running statistics with the unbiased count/(count - 1) variance; running pointers may be null.
void sync_bn_finalize_f32(int64_t c, const float* sum, const float* sumsq, float eps, float momentum, float* mean,
                          float* invstd, float* running_mean, float* running_var);
// v[i] *= m_local / count[0]: reduced backward sums over the global count, for
// batch_norm_backward_input_f32, which divides by the local M.
void sync_bn_rescale_f32(int64_t n, float* v, float m_local, const float* count);

}  // namespace mdq::kernels

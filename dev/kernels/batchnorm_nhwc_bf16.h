// Training BatchNorm on NHWC bf16 activations (workshop: not on the main path yet). The engine's
// training tensors are NCHW f32 today, and every bf16 convolution pays a transpose in and out
// (27% of a graphed ResNet-18 step's kernel time at batch 128); keeping activations NHWC bf16
// between layers needs a BatchNorm that reads and writes them. This is that BatchNorm, without
// affine parameters (mdq's recipe), with the ReLU and the residual sum that follow it in ResNet
// fused in. Statistics and sums accumulate in f32 over a fixed (channel x row-chunk) grid, so the
// results are deterministic.
//
// x is [rows][C] with rows = N·H·W and the channel innermost. With M = rows, for each channel c:
//   mean = (1/M) Σ x,  var = (1/M) Σ (x − mean)²,  invstd = 1/√(var + eps)
//   x̂ = (x − mean)·invstd,  pre = x̂ + residual,  out = relu ? max(0, pre) : pre   (stored bf16)
//   running_mean ← (1−m)·running_mean + m·mean,  running_var ← (1−m)·running_var + m·var·M/(M−1)
// Backward, with g' = g·1[out > 0] when relu (the stored output's sign is the mask), else g:
//   sum_g = Σ g',  sum_gx̂ = Σ g'·x̂,  grad_in = invstd·(g' − sum_g/M − x̂·sum_gx̂/M),  grad_residual = g'
// The _ref functions are the CPU reference (double sums in row order, the same bf16 rounding).
#pragma once
#include <cstdint>

namespace mdq::dev {

struct BnNhwcForward {
  int64_t rows = 0, c = 0;
  float eps = 1e-5f, momentum = 0.1f;
  const uint16_t* x = nullptr;         // bf16 [rows][C]
  const uint16_t* residual = nullptr;  // bf16 [rows][C], or null
  float* running_mean = nullptr;       // [C], updated; may be null (with running_var)
  float* running_var = nullptr;
  float* mean = nullptr;    // [C] out
  float* invstd = nullptr;  // [C] out
  bool relu = false;
  uint16_t* out = nullptr;  // bf16 [rows][C]
};

struct BnNhwcBackward {
  int64_t rows = 0, c = 0;
  const uint16_t* grad_out = nullptr;  // bf16 [rows][C]
  const uint16_t* x = nullptr;         // the forward's input
  const uint16_t* out = nullptr;       // the forward's output (read when relu)
  const float* mean = nullptr;         // the forward's statistics
  const float* invstd = nullptr;
  bool relu = false;
  float* sum_g = nullptr;               // [C] out
  float* sum_gxhat = nullptr;           // [C] out
  uint16_t* grad_in = nullptr;          // bf16 [rows][C]
  uint16_t* grad_residual = nullptr;    // bf16 [rows][C], or null
};

// Device pointers, queued on mdq::cuda::stream().
void bn_nhwc_bf16_forward(const BnNhwcForward& a);
void bn_nhwc_bf16_backward(const BnNhwcBackward& a);
// Host pointers: the CPU reference.
void bn_nhwc_bf16_forward_ref(const BnNhwcForward& a);
void bn_nhwc_bf16_backward_ref(const BnNhwcBackward& a);

}  // namespace mdq::dev

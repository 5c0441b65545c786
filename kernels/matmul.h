// The dense matrix product of ops::matmul (engine/ops/matmul.h) on the GPU (kernels/matmul.cu):
// cuBLAS at the compute precision the engine asks for, and the kernel that rounds f32 operands
// to bf16 for the bf16 precision. The CPU reference (engine/ops/matmul.cpp) takes the same
// arguments. Device pointers; work is queued on mdq::cuda::stream().
#pragma once
#include <cstdint>

#include "common/precision.h"

namespace mdq::kernels {

// op(a) [m, k] x op(b) [k, n] -> out [m, n], every matrix row-major; op(t) is t or its transpose.
struct GemmArgs {
  int64_t m = 0, n = 0, k = 0;  // k > 0 (an empty sum is the caller's zeros)
  bool transpose_a = false, transpose_b = false;
  bool accumulate = false;  // out += op(a) op(b) instead of out = op(a) op(b)
  // FP32, TF32 (tensor cores) or BF16 operands; the sums and the output are f32 in every case.
  Precision precision = Precision::FP32;
  const float* a = nullptr;
  int64_t a_cols = 0;  // row length of a as stored ([m, k], or [k, m] when transposed)
  const float* b = nullptr;
  int64_t b_cols = 0;
  float* out = nullptr;
};
void gemm_f32(const GemmArgs& g);

// out[i] = bf16(x[i]), round to nearest even; out holds raw bf16 bits.
void gemm_operand_to_bf16(const float* x, uint16_t* out, int64_t n);

}  // namespace mdq::kernels

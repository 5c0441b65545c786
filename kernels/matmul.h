// Launcher for the one kernel the GEMM path needs besides cuBLAS: rounding f32 operands to bf16
// for the bf16 compute precision (kernels/matmul.cu). Device pointers; mdq::cuda::stream().
#pragma once
#include <cstdint>

namespace mdq::kernels {

// out[i] = bf16(x[i]), round to nearest even; out holds raw bf16 bits.
void gemm_operand_to_bf16(const float* x, uint16_t* out, int64_t n);

}  // namespace mdq::kernels

// bf16 operand rounding for the bf16 GEMM path of ops::matmul (engine/ops/matmul.cpp).
#include <cuda_bf16.h>

#include "engine/cuda_context.h"
#include "kernels/matmul.h"

namespace mdq::kernels {
namespace {

__global__ void to_bf16_kernel(const float* x, uint16_t* out, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = __bfloat16_as_ushort(__float2bfloat16_rn(x[i]));
}

}  // namespace

void gemm_operand_to_bf16(const float* x, uint16_t* out, int64_t n) {
  if (n == 0) return;
  to_bf16_kernel<<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(x, out, n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace mdq::kernels

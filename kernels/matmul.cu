// The GEMM of ops::matmul on the GPU (kernels/matmul.h): cuBLAS, plus the bf16 operand rounding
// of the bf16 compute precision.
#include <cuda_bf16.h>

#include <climits>

#include "common/error.h"
#include "kernels/backend.h"
#include "kernels/cuda_common.h"
#include "kernels/device_memory.h"
#include "kernels/matmul.h"

namespace mdq::kernels {
namespace {

__global__ void to_bf16_kernel(const float* x, uint16_t* out, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = __bfloat16_as_ushort(__float2bfloat16_rn(x[i]));
}

// An f32 operand rounded once to bf16, in a block of the caching allocator: stream-ordered
// reuse, so no cudaMalloc and no sync in steady state.
class Bf16Operand {
 public:
  Bf16Operand(const float* x, int64_t n) : bits_(n) { gemm_operand_to_bf16(x, bits_.get(), n); }
  const uint16_t* bits() const { return bits_.get(); }

 private:
  DeviceScratch<uint16_t> bits_;
};

}  // namespace

void gemm_operand_to_bf16(const float* x, uint16_t* out, int64_t n) {
  if (n == 0) return;
  to_bf16_kernel<<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(x, out, n);
  CUDA_CHECK_LAUNCH();
}

// cuBLAS is column-major. A row-major [r,c] buffer read column-major is its transpose, so the
// row-major C = op(a) op(b) is the column-major C^T = op(b)^T op(a)^T: pass b first, then a,
// each with its own transpose flag, and every leading dimension is the stored row length.
void gemm_f32(const GemmArgs& g) {
  MDQ_CHECK(g.m <= INT_MAX && g.n <= INT_MAX && g.k <= INT_MAX && g.a_cols <= INT_MAX && g.b_cols <= INT_MAX,
            "matmul: [" << g.m << ", " << g.k << "] x [" << g.k << ", " << g.n << "] exceeds cuBLAS's 32-bit sizes");
  const int m = static_cast<int>(g.m), n = static_cast<int>(g.n), k = static_cast<int>(g.k);
  const int lda_b = static_cast<int>(g.b_cols), ldb_a = static_cast<int>(g.a_cols);
  const cublasOperation_t op_b = g.transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = g.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const float alpha = 1.f, beta = g.accumulate ? 1.f : 0.f;  // beta 0: cuBLAS never reads out
  cublasHandle_t h = cuda::cublas();
  // The compute type decides the precision; the handle's math mode is pinned to the default so
  // that CUBLAS_COMPUTE_32F really is fp32 even if someone set TF32 math on the shared handle.
  CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
  if (g.precision == Precision::BF16) {
    // bf16 operands, fp32 accumulation and fp32 output: a and b rounded once into temporaries.
    const Bf16Operand a16(g.a, g.m * g.k), b16(g.b, g.k * g.n);
    CUBLAS_CHECK(cublasGemmEx(h, op_b, op_a, n, m, k, &alpha, b16.bits(), CUDA_R_16BF, lda_b, a16.bits(), CUDA_R_16BF,
                              ldb_a, &beta, g.out, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return;
  }
  const cublasComputeType_t compute =
      g.precision == Precision::TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  CUBLAS_CHECK(cublasGemmEx(h, op_b, op_a, n, m, k, &alpha, g.b, CUDA_R_32F, lda_b, g.a, CUDA_R_32F, ldb_a, &beta,
                            g.out, CUDA_R_32F, n, compute, CUBLAS_GEMM_DEFAULT));
}

void register_matmul(CudaBackend& b) { b.gemm_f32 = gemm_f32; }

}  // namespace mdq::kernels

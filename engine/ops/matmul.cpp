// Matrix products and the row-wise bias helpers: CPU reference loops and the cuBLAS/CUDA path.
#include "engine/ops/matmul.h"

#include <algorithm>
#include <climits>
#include <vector>

#include "engine/precision.h"
#ifdef MDQ_HAS_CUDA
#include "engine/cuda_context.h"
#include "kernels/matmul.h"
#include "kernels/rowwise.h"
#endif

namespace mdq::ops {
namespace {

struct GemmShape {
  int64_t m, n, k;
};

GemmShape check_matmul(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  check_dtype("matmul", a, DType::F32);
  check_dtype("matmul", b, DType::F32);
  MDQ_CHECK(a.ndim() == 2 && b.ndim() == 2,
            "matmul: expected two 2-d tensors, got " << a.describe() << " vs " << b.describe());
  check_same_device("matmul", a, b);
  const int64_t m = ta ? a.dim(1) : a.dim(0), ka = ta ? a.dim(0) : a.dim(1);
  const int64_t kb = tb ? b.dim(1) : b.dim(0), n = tb ? b.dim(0) : b.dim(1);
  MDQ_CHECK(ka == kb, "matmul: inner dimensions differ: " << a.describe() << " vs " << b.describe()
                                                          << " (transpose_a=" << ta << ", transpose_b=" << tb
                                                          << ": " << ka << " vs " << kb << ")");
  return {m, n, ka};
}

// Plain loops, accumulated in double so the reference is more accurate than any GPU path it
// judges. Loop order keeps the innermost loop on contiguous memory for each transpose case.
void matmul_cpu(const Tensor& a, const Tensor& b, Tensor& out, bool ta, bool tb, GemmShape s, bool accumulate) {
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* po = out.data<float>();
  const int64_t M = s.m, N = s.n, K = s.k;
  auto a_at = [&](int64_t i, int64_t k) { return static_cast<double>(ta ? pa[k * M + i] : pa[i * K + k]); };
  std::vector<double> row(static_cast<size_t>(N));
  for (int64_t i = 0; i < M; ++i) {
    if (tb) {  // b stored [N,K]: each output is a dot product of contiguous rows
      for (int64_t j = 0; j < N; ++j) {
        double acc = 0.0;
        for (int64_t k = 0; k < K; ++k) acc += a_at(i, k) * pb[j * K + k];
        row[static_cast<size_t>(j)] = acc;
      }
    } else {  // b stored [K,N]: add a_ik times row k of b
      std::fill(row.begin(), row.end(), 0.0);
      for (int64_t k = 0; k < K; ++k) {
        const double aik = a_at(i, k);
        const float* bk = pb + k * N;
        for (int64_t j = 0; j < N; ++j) row[static_cast<size_t>(j)] += aik * bk[j];
      }
    }
    float* oi = po + i * N;
    for (int64_t j = 0; j < N; ++j)
      oi[j] = accumulate ? oi[j] + static_cast<float>(row[static_cast<size_t>(j)]) : static_cast<float>(row[static_cast<size_t>(j)]);
  }
}

#ifdef MDQ_HAS_CUDA
// cuBLAS is column-major. A row-major [r,c] buffer read column-major is its transpose, so the
// row-major C = op(a) op(b) is the column-major C^T = op(b)^T op(a)^T: pass b first, then a,
// each with its own transpose flag, and every leading dimension is the stored row length.
void matmul_cuda(const Tensor& a, const Tensor& b, Tensor& out, bool ta, bool tb, GemmShape s, bool accumulate) {
  MDQ_CHECK(s.m <= INT_MAX && s.n <= INT_MAX && s.k <= INT_MAX && a.dim(1) <= INT_MAX && b.dim(1) <= INT_MAX,
            "matmul: " << a.describe() << " x " << b.describe() << " exceeds cuBLAS's 32-bit sizes");
  const int m = static_cast<int>(s.m), n = static_cast<int>(s.n), k = static_cast<int>(s.k);
  const int lda_b = static_cast<int>(b.dim(1)), ldb_a = static_cast<int>(a.dim(1));
  const cublasOperation_t op_b = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  const float alpha = 1.f, beta = accumulate ? 1.f : 0.f;  // beta 0: cuBLAS never reads out
  cublasHandle_t h = cuda::cublas();
  // The compute type decides the precision; the handle's math mode is pinned to the default so
  // that CUBLAS_COMPUTE_32F really is fp32 even if someone set TF32 math on the shared handle.
  CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
  if (precision() == Precision::BF16) {
    // bf16 operands, fp32 accumulation and fp32 output: round a and b once into temporaries
    // (stream-ordered caching allocator, so no cudaMalloc and no sync).
    Tensor a16 = Tensor::empty(a.shape(), DType::BF16, Device::CUDA);
    Tensor b16 = Tensor::empty(b.shape(), DType::BF16, Device::CUDA);
    kernels::gemm_operand_to_bf16(a.data<float>(), a16.data<uint16_t>(), a.numel());
    kernels::gemm_operand_to_bf16(b.data<float>(), b16.data<uint16_t>(), b.numel());
    CUBLAS_CHECK(cublasGemmEx(h, op_b, op_a, n, m, k, &alpha, b16.raw(), CUDA_R_16BF, lda_b, a16.raw(), CUDA_R_16BF,
                              ldb_a, &beta, out.raw(), CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return;
  }
  const cublasComputeType_t compute =
      precision() == Precision::TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  CUBLAS_CHECK(cublasGemmEx(h, op_b, op_a, n, m, k, &alpha, b.raw(), CUDA_R_32F, lda_b, a.raw(), CUDA_R_32F, ldb_a,
                            &beta, out.raw(), CUDA_R_32F, n, compute, CUBLAS_GEMM_DEFAULT));
}
#endif

void matmul_dispatch(Tensor& out, const Tensor& a, const Tensor& b, bool ta, bool tb, GemmShape s, bool accumulate) {
  if (s.m == 0 || s.n == 0) return;
  if (s.k == 0) {  // an empty sum: zeros (cuBLAS rejects a leading dimension of 0)
    if (!accumulate) out.zero_();
    return;
  }
  if (a.is_cuda()) {
#ifdef MDQ_HAS_CUDA
    matmul_cuda(a, b, out, ta, tb, s, accumulate);
#endif
    return;
  }
  matmul_cpu(a, b, out, ta, tb, s, accumulate);
}

void check_row_vector(const char* op, const Tensor& x, const Tensor& b) {
  check_dtype(op, x, DType::F32);
  check_dtype(op, b, DType::F32);
  check_same_device(op, x, b);
  MDQ_CHECK(x.ndim() == 2 && b.ndim() == 1 && b.dim(0) == x.dim(1),
            op << ": expected x [N, C] and b [C], got " << x.describe() << " vs " << b.describe());
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b) {
  GemmShape s = check_matmul(a, b, transpose_a, transpose_b);
  Tensor out = Tensor::empty({s.m, s.n}, DType::F32, a.device());
  matmul_dispatch(out, a, b, transpose_a, transpose_b, s, false);
  return out;
}

void matmul_into(Tensor& out, const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b, bool accumulate) {
  GemmShape s = check_matmul(a, b, transpose_a, transpose_b);
  check_dtype("matmul_into", out, DType::F32);
  check_same_device("matmul_into", out, a);
  MDQ_CHECK(out.shape() == Shape({s.m, s.n}), "matmul_into: output " << out.describe() << " is not [" << s.m << ", "
                                                                     << s.n << "] for " << a.describe() << " x "
                                                                     << b.describe());
  matmul_dispatch(out, a, b, transpose_a, transpose_b, s, accumulate);
}

Tensor add_row_vector(const Tensor& x, const Tensor& b) {
  check_row_vector("add_row_vector", x, b);
  Tensor out = Tensor::empty(x.shape(), DType::F32, x.device());
  const int64_t rows = x.dim(0), cols = x.dim(1);
  if (x.is_cuda()) {
#ifdef MDQ_HAS_CUDA
    kernels::add_row_vector_f32(x.data<float>(), b.data<float>(), out.data<float>(), rows, cols);
#endif
    return out;
  }
  const float* px = x.data<float>();
  const float* pb = b.data<float>();
  float* po = out.data<float>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) po[r * cols + c] = px[r * cols + c] + pb[c];
  return out;
}

Tensor sum_rows(const Tensor& g) {
  check_dtype("sum_rows", g, DType::F32);
  check_ndim("sum_rows", g, 2);
  const int64_t rows = g.dim(0), cols = g.dim(1);
  Tensor out = Tensor::empty({cols}, DType::F32, g.device());
  if (g.is_cuda()) {
#ifdef MDQ_HAS_CUDA
    kernels::sum_rows_f32(g.data<float>(), out.data<float>(), rows, cols);
#endif
    return out;
  }
  const float* pg = g.data<float>();
  std::vector<double> acc(static_cast<size_t>(cols), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) acc[static_cast<size_t>(c)] += pg[r * cols + c];
  float* po = out.data<float>();
  for (int64_t c = 0; c < cols; ++c) po[c] = static_cast<float>(acc[static_cast<size_t>(c)]);
  return out;
}

}  // namespace mdq::ops

// Matrix products and the row-wise bias helpers: checks, the CPU reference loops, and one
// dispatch each (the CUDA side: cuBLAS in kernels/matmul.cu, kernels/rowwise.cu).
#include "engine/ops/matmul.h"

#include <algorithm>
#include <vector>

#include "engine/backend/registry.h"
#include "engine/precision.h"

namespace mdq::ops {
namespace {

using backend::CudaBackend;
using backend::dispatch;
using kernels::GemmArgs;

// The product's shape and operands, after checking that a and b fit.
GemmArgs check_matmul(const Tensor& a, const Tensor& b, bool ta, bool tb) {
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
  GemmArgs g;
  g.m = m, g.n = n, g.k = ka;
  g.transpose_a = ta, g.transpose_b = tb;
  g.a = a.data<float>(), g.a_cols = a.dim(1);
  g.b = b.data<float>(), g.b_cols = b.dim(1);
  return g;
}

// Plain loops, accumulated in double so the reference is more accurate than any GPU path it
// judges (at every precision). Loop order keeps the innermost loop on contiguous memory for each
// transpose case.
void gemm_cpu(const GemmArgs& g) {
  const float* pa = g.a;
  const float* pb = g.b;
  float* po = g.out;
  const int64_t M = g.m, N = g.n, K = g.k;
  auto a_at = [&](int64_t i, int64_t k) { return static_cast<double>(g.transpose_a ? pa[k * M + i] : pa[i * K + k]); };
  std::vector<double> row(static_cast<size_t>(N));
  for (int64_t i = 0; i < M; ++i) {
    if (g.transpose_b) {  // b stored [N,K]: each output is a dot product of contiguous rows
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
      oi[j] = g.accumulate ? oi[j] + static_cast<float>(row[static_cast<size_t>(j)])
                           : static_cast<float>(row[static_cast<size_t>(j)]);
  }
}

void gemm(Tensor& out, GemmArgs g, bool accumulate) {
  if (g.m == 0 || g.n == 0) return;
  if (g.k == 0) {  // an empty sum: zeros (cuBLAS rejects a leading dimension of 0)
    if (!accumulate) out.zero_();
    return;
  }
  g.accumulate = accumulate;
  g.precision = precision();
  g.out = out.data<float>();
  dispatch("matmul", out.device(), gemm_cpu, &CudaBackend::gemm_f32)(g);
}

void add_row_vector_cpu(const float* x, const float* b, float* out, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = x[r * cols + c] + b[c];
}

void sum_rows_cpu(const float* g, float* out, int64_t rows, int64_t cols) {
  std::vector<double> acc(static_cast<size_t>(cols), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) acc[static_cast<size_t>(c)] += g[r * cols + c];
  for (int64_t c = 0; c < cols; ++c) out[c] = static_cast<float>(acc[static_cast<size_t>(c)]);
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
  const GemmArgs g = check_matmul(a, b, transpose_a, transpose_b);
  Tensor out = Tensor::empty({g.m, g.n}, DType::F32, a.device());
  gemm(out, g, false);
  return out;
}

void matmul_into(Tensor& out, const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b, bool accumulate) {
  const GemmArgs g = check_matmul(a, b, transpose_a, transpose_b);
  check_dtype("matmul_into", out, DType::F32);
  check_same_device("matmul_into", out, a);
  MDQ_CHECK(out.shape() == Shape({g.m, g.n}), "matmul_into: output " << out.describe() << " is not [" << g.m << ", "
                                                                     << g.n << "] for " << a.describe() << " x "
                                                                     << b.describe());
  gemm(out, g, accumulate);
}

Tensor add_row_vector(const Tensor& x, const Tensor& b) {
  check_row_vector("add_row_vector", x, b);
  Tensor out = Tensor::empty(x.shape(), DType::F32, x.device());
  dispatch("add_row_vector", x.device(), add_row_vector_cpu, &CudaBackend::add_row_vector_f32)(
      x.data<float>(), b.data<float>(), out.data<float>(), x.dim(0), x.dim(1));
  return out;
}

Tensor sum_rows(const Tensor& g) {
  check_dtype("sum_rows", g, DType::F32);
  check_ndim("sum_rows", g, 2);
  Tensor out = Tensor::empty({g.dim(1)}, DType::F32, g.device());
  dispatch("sum_rows", g.device(), sum_rows_cpu, &CudaBackend::sum_rows_f32)(g.data<float>(), out.data<float>(),
                                                                            g.dim(0), g.dim(1));
  return out;
}

}  // namespace mdq::ops

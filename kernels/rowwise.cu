// Row-wise kernels for fully connected layers: broadcast a bias row over a batch, and the
// column sum that is its gradient.
#include "kernels/backend.h"
#include "kernels/cuda_common.h"
#include "kernels/rowwise.h"

namespace mdq::kernels {
namespace {

// ---------------------------------------------------------------- kernels

__global__ void add_row_vector_kernel(const float* x, const float* b, float* out, int64_t n, int64_t cols) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = x[i] + b[i % cols];
}

// Block (32, 8): threadIdx.x picks a column (adjacent threads read adjacent addresses), the 8
// rows of threads stride down the rows, then the 8 partial sums are added in a fixed order, so
// the result does not depend on scheduling (no atomics).
constexpr int kSumCols = 32;
constexpr int kSumRows = 8;

__global__ void sum_rows_kernel(const float* g, float* out, int64_t rows, int64_t cols) {
  __shared__ float partial[kSumRows][kSumCols];
  const int64_t c = blockIdx.x * (int64_t)kSumCols + threadIdx.x;
  float acc = 0.f;
  if (c < cols)
    for (int64_t r = threadIdx.y; r < rows; r += kSumRows) acc += g[r * cols + c];
  partial[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float s = 0.f;
    for (int k = 0; k < kSumRows; ++k) s += partial[k][threadIdx.x];
    out[c] = s;
  }
}

}  // namespace

// ---------------------------------------------------------------- launchers

void add_row_vector_f32(const float* x, const float* b, float* out, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  if (n == 0) return;
  add_row_vector_kernel<<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(x, b, out, n, cols);
  CUDA_CHECK_LAUNCH();
}

void sum_rows_f32(const float* g, float* out, int64_t rows, int64_t cols) {
  if (cols == 0) return;
  const unsigned blocks = static_cast<unsigned>((cols + kSumCols - 1) / kSumCols);
  sum_rows_kernel<<<blocks, dim3(kSumCols, kSumRows), 0, cuda::stream()>>>(g, out, rows, cols);
  CUDA_CHECK_LAUNCH();
}

void register_rowwise(CudaBackend& b) {
  b.add_row_vector_f32 = add_row_vector_f32;
  b.sum_rows_f32 = sum_rows_f32;
}

}  // namespace mdq::kernels

// Elementwise kernels: grid-stride loops, one element per thread per step.
#include "kernels/backend.h"
#include "kernels/cuda_common.h"
#include "kernels/elementwise.h"

namespace mdq::kernels {
namespace {

__global__ void fill_kernel(float* out, int64_t n, float value) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = value;
}

__global__ void binary_kernel(BinaryOp op, const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    out[i] = binary_op(op, a[i], b[i]);
  }
}

__global__ void scale_kernel(const float* a, float s, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = a[i] * s;
}

__global__ void axpy_kernel(float* y, float alpha, const float* x, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] += alpha * x[i];
}

// One block, fixed order of additions: the same input always gives the same sum.
__global__ void sum_kernel(const float* x, int64_t n, float* out) {
  __shared__ float partial[1024];
  float acc = 0.f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += x[i];
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[0] = partial[0];
}

}  // namespace

void fill_f32(float* out, int64_t n, float value) {
  if (n == 0) return;
  fill_kernel<<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(out, n, value);
  CUDA_CHECK_LAUNCH();
}
void binary_f32(BinaryOp op, const float* a, const float* b, float* out, int64_t n) {
  if (n == 0) return;
  binary_kernel<<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(op, a, b, out, n);
  CUDA_CHECK_LAUNCH();
}
void scale_f32(const float* a, float s, float* out, int64_t n) {
  if (n == 0) return;
  scale_kernel<<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(a, s, out, n);
  CUDA_CHECK_LAUNCH();
}
void axpy_f32(float* y, float alpha, const float* x, int64_t n) {
  if (n == 0) return;
  axpy_kernel<<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(y, alpha, x, n);
  CUDA_CHECK_LAUNCH();
}
void sum_f32(const float* x, int64_t n, float* out) {
  sum_kernel<<<1, 1024, 0, cuda::stream()>>>(x, n, out);
  CUDA_CHECK_LAUNCH();
}

void register_elementwise(CudaBackend& b) {
  b.fill_f32 = fill_f32;
  b.binary_f32 = binary_f32;
  b.scale_f32 = scale_f32;
  b.axpy_f32 = axpy_f32;
  b.sum_f32 = sum_f32;
}

}  // namespace mdq::kernels

// Activation kernels: grid-stride loops, one element per thread per step, on the per-element
// math of activation.h, which the CPU reference (engine/ops/activation.cpp) shares.
#include "kernels/activation.h"
#include "kernels/backend.h"
#include "kernels/cuda_common.h"

namespace mdq::kernels {
namespace {

__global__ void activation_forward_kernel(Activation act, const float* x, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = activation_value(act, x[i]);
}

__global__ void activation_backward_kernel(Activation act, const float* grad_out, const float* x, float* grad_in,
                                           int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    grad_in[i] = activation_grad(act, grad_out[i], x[i]);
}

}  // namespace

void activation_forward_f32(Activation act, const float* x, float* out, int64_t n) {
  if (n == 0) return;
  activation_forward_kernel<<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(act, x, out, n);
  CUDA_CHECK_LAUNCH();
}

void activation_backward_f32(Activation act, const float* grad_out, const float* x, float* grad_in, int64_t n) {
  if (n == 0) return;
  activation_backward_kernel<<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(act, grad_out, x, grad_in, n);
  CUDA_CHECK_LAUNCH();
}

void register_activation(CudaBackend& b) {
  b.activation_forward_f32 = activation_forward_f32;
  b.activation_backward_f32 = activation_backward_f32;
}

}  // namespace mdq::kernels

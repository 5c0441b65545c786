// Activation kernels: grid-stride loops, one element per thread per step. The formulas must
// stay identical to the CPU reference's in engine/ops/activation.cpp (the GPU tests compare
// the two bit for bit at 1e-6).
#include "kernels/activation.h"
#include "kernels/backend.h"
#include "kernels/cuda_common.h"

namespace mdq::kernels {
namespace {

// NaN passes through relu/relu6 (NaN < 0 is false), so a diverging run shows NaN, not 0.
__device__ __forceinline__ float act_forward(Activation act, float x) {
  switch (act) {
    case Activation::ReLU: return x < 0.f ? 0.f : x;
    case Activation::ReLU6: return x < 0.f ? 0.f : (x > 6.f ? 6.f : x);
    case Activation::SignSTE: return x < 0.f ? -1.f : (x >= 0.f ? 1.f : x);  // sign(0) = +1; NaN stays NaN
  }
  return x;
}

// Subgradient 0 at the kinks (relu at 0, relu6 at 0 and 6); STE passes g where |x| <= 1 (E9).
__device__ __forceinline__ float act_backward(Activation act, float g, float x) {
  switch (act) {
    case Activation::ReLU: return x > 0.f ? g : 0.f;
    case Activation::ReLU6: return (x > 0.f && x < 6.f) ? g : 0.f;
    case Activation::SignSTE: return fabsf(x) <= 1.f ? g : 0.f;
  }
  return g;
}

__global__ void activation_forward_kernel(Activation act, const float* x, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = act_forward(act, x[i]);
}

__global__ void activation_backward_kernel(Activation act, const float* grad_out, const float* x, float* grad_in,
                                           int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    grad_in[i] = act_backward(act, grad_out[i], x[i]);
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

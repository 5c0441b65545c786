// Fused optimizer steps (DESIGN.md E8): one memory-bound pass per parameter, the per-element
// math shared with the CPU reference through kernels/adam_math.h and kernels/sgd_math.h.
#include "engine/cuda_context.h"
#include "kernels/optim.h"

namespace mdq::kernels {
namespace {

constexpr int kBlock = 256;

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

__device__ inline void adam_one(float& w, float g, float& m, float& v, float lr, float wd, const AdamMoments& a) {
  w -= lr * adam_direction(l2_decayed(g, w, wd), m, v, a);
}

// kVec: the body runs over float4s (all pointers 16-byte aligned), then the last n % 4 elements
// one by one. Otherwise every element is scalar.
template <bool kVec>
__global__ void adam_kernel(float* w, const float* g, float* m, float* v, int64_t n, float lr, float wd,
                            AdamMoments a) {
  const int64_t start = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  int64_t done = 0;
  if (kVec) {
    const int64_t n4 = n / 4;
    for (int64_t i = start; i < n4; i += stride) {
      float4 w4 = reinterpret_cast<float4*>(w)[i];
      const float4 g4 = reinterpret_cast<const float4*>(g)[i];
      float4 m4 = reinterpret_cast<float4*>(m)[i];
      float4 v4 = reinterpret_cast<float4*>(v)[i];
      adam_one(w4.x, g4.x, m4.x, v4.x, lr, wd, a);
      adam_one(w4.y, g4.y, m4.y, v4.y, lr, wd, a);
      adam_one(w4.z, g4.z, m4.z, v4.z, lr, wd, a);
      adam_one(w4.w, g4.w, m4.w, v4.w, lr, wd, a);
      reinterpret_cast<float4*>(w)[i] = w4;
      reinterpret_cast<float4*>(m)[i] = m4;
      reinterpret_cast<float4*>(v)[i] = v4;
    }
    done = n4 * 4;
  }
  for (int64_t i = done + start; i < n; i += stride) adam_one(w[i], g[i], m[i], v[i], lr, wd, a);
}

__device__ inline void sgd_one(float& w, float g, float& buf, float lr, float wd, float momentum, bool nesterov,
                               bool first) {
  w -= lr * sgd_direction(l2_decayed(g, w, wd), buf, momentum, nesterov, first);
}

// kMomentum false: buf is null and never touched (sgd_direction returns g when momentum is 0).
template <bool kVec, bool kMomentum>
__global__ void sgd_kernel(float* w, const float* g, float* buf, int64_t n, float lr, float wd, float momentum,
                           bool nesterov, bool first) {
  const int64_t start = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  const float mom = kMomentum ? momentum : 0.0f;
  int64_t done = 0;
  if (kVec) {
    const int64_t n4 = n / 4;
    for (int64_t i = start; i < n4; i += stride) {
      float4 w4 = reinterpret_cast<float4*>(w)[i];
      const float4 g4 = reinterpret_cast<const float4*>(g)[i];
      float4 b4 = kMomentum ? reinterpret_cast<float4*>(buf)[i] : make_float4(0.f, 0.f, 0.f, 0.f);
      sgd_one(w4.x, g4.x, b4.x, lr, wd, mom, nesterov, first);
      sgd_one(w4.y, g4.y, b4.y, lr, wd, mom, nesterov, first);
      sgd_one(w4.z, g4.z, b4.z, lr, wd, mom, nesterov, first);
      sgd_one(w4.w, g4.w, b4.w, lr, wd, mom, nesterov, first);
      reinterpret_cast<float4*>(w)[i] = w4;
      if (kMomentum) reinterpret_cast<float4*>(buf)[i] = b4;
    }
    done = n4 * 4;
  }
  for (int64_t i = done + start; i < n; i += stride) {
    float b = kMomentum ? buf[i] : 0.0f;
    sgd_one(w[i], g[i], b, lr, wd, mom, nesterov, first);
    if (kMomentum) buf[i] = b;
  }
}

}  // namespace

void adam_step_f32(float* w, const float* g, float* m, float* v, int64_t n, float lr, float weight_decay,
                   const AdamMoments& a) {
  if (n == 0) return;
  if (aligned16(w) && aligned16(g) && aligned16(m) && aligned16(v)) {
    // One thread per float4 (at least one thread, so the tail of a tiny tensor runs too).
    adam_kernel<true><<<cuda::grid_for(n / 4 + 1, kBlock), kBlock, 0, cuda::stream()>>>(w, g, m, v, n, lr,
                                                                                         weight_decay, a);
  } else {
    adam_kernel<false><<<cuda::grid_for(n, kBlock), kBlock, 0, cuda::stream()>>>(w, g, m, v, n, lr, weight_decay, a);
  }
  CUDA_CHECK_LAUNCH();
}

void sgd_step_f32(float* w, const float* g, float* buf, int64_t n, float lr, float weight_decay, float momentum,
                  bool nesterov, bool first_step) {
  if (n == 0) return;
  const bool has_momentum = momentum != 0.0f;
  const bool vec = aligned16(w) && aligned16(g) && (!has_momentum || aligned16(buf));
  const unsigned grid = cuda::grid_for(vec ? n / 4 + 1 : n, kBlock);
  if (has_momentum) {
    if (vec)
      sgd_kernel<true, true><<<grid, kBlock, 0, cuda::stream()>>>(w, g, buf, n, lr, weight_decay, momentum, nesterov,
                                                                  first_step);
    else
      sgd_kernel<false, true><<<grid, kBlock, 0, cuda::stream()>>>(w, g, buf, n, lr, weight_decay, momentum,
                                                                   nesterov, first_step);
  } else {
    if (vec)
      sgd_kernel<true, false><<<grid, kBlock, 0, cuda::stream()>>>(w, g, nullptr, n, lr, weight_decay, 0.0f, false,
                                                                   false);
    else
      sgd_kernel<false, false><<<grid, kBlock, 0, cuda::stream()>>>(w, g, nullptr, n, lr, weight_decay, 0.0f, false,
                                                                    false);
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace mdq::kernels

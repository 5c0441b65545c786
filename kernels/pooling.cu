// Pooling kernels: one thread per output element for the forward passes and one thread per
// input element for the backward passes, which gather instead of scattering, so no atomics
// and the same grads every run. Global average pooling: one warp per (n, c) plane.
#include <cmath>

#include "kernels/backend.h"
#include "kernels/cuda_common.h"
#include "kernels/pooling.h"

namespace mdq::kernels {
namespace {

__global__ void max_pool2d_forward_kernel(Pool2dShape s, const float* x, float* out, int32_t* argmax) {
  const int64_t total = s.planes * s.out_h * s.out_w;
  for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < total; o += (int64_t)gridDim.x * blockDim.x) {
    const int ow = (int)(o % s.out_w);
    const int oh = (int)((o / s.out_w) % s.out_h);
    const int64_t p = o / ((int64_t)s.out_w * s.out_h);
    const float* plane = x + p * s.h * s.w;
    const int h0 = oh * s.stride - s.padding, w0 = ow * s.stride - s.padding;
    float best = -INFINITY;
    int idx = -1;
    // Scan order and the NaN rule match the CPU reference: first strict max wins, NaN wins.
    for (int kh = 0; kh < s.kernel; ++kh) {
      const int ih = h0 + kh;
      if (ih < 0 || ih >= s.h) continue;
      for (int kw = 0; kw < s.kernel; ++kw) {
        const int iw = w0 + kw;
        if (iw < 0 || iw >= s.w) continue;
        const float v = plane[ih * s.w + iw];
        if (idx < 0 || v > best || isnan(v)) {
          best = v;
          idx = ih * s.w + iw;
        }
      }
    }
    out[o] = best;
    argmax[o] = idx;
  }
}

// Output rows (or columns) whose window covers input position i: lo..hi inclusive.
__device__ __forceinline__ void covering(int i, int kernel, int stride, int padding, int out_n, int& lo, int& hi) {
  const int first = i + padding - kernel + 1;  // smallest o*stride that still reaches i
  lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  hi = (i + padding) / stride;
  if (hi > out_n - 1) hi = out_n - 1;
}

__global__ void max_pool2d_backward_kernel(Pool2dShape s, const float* grad_out, const int32_t* argmax,
                                           float* grad_in) {
  const int64_t total = s.planes * s.h * s.w;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int iw = (int)(i % s.w);
    const int ih = (int)((i / s.w) % s.h);
    const int64_t p = i / ((int64_t)s.w * s.h);
    const int self = ih * s.w + iw;
    int oh_lo, oh_hi, ow_lo, ow_hi;
    covering(ih, s.kernel, s.stride, s.padding, s.out_h, oh_lo, oh_hi);
    covering(iw, s.kernel, s.stride, s.padding, s.out_w, ow_lo, ow_hi);
    const int64_t base = p * s.out_h * s.out_w;
    float acc = 0.f;
    for (int oh = oh_lo; oh <= oh_hi; ++oh)
      for (int ow = ow_lo; ow <= ow_hi; ++ow) {
        const int64_t o = base + (int64_t)oh * s.out_w + ow;
        if (argmax[o] == self) acc += grad_out[o];
      }
    grad_in[i] = acc;
  }
}

__global__ void avg_pool2d_forward_kernel(Pool2dShape s, const float* x, float* out) {
  const int64_t total = s.planes * s.out_h * s.out_w;
  const float divisor = (float)(s.kernel * s.kernel);
  for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < total; o += (int64_t)gridDim.x * blockDim.x) {
    const int ow = (int)(o % s.out_w);
    const int oh = (int)((o / s.out_w) % s.out_h);
    const int64_t p = o / ((int64_t)s.out_w * s.out_h);
    const float* plane = x + p * s.h * s.w;
    const int h0 = oh * s.stride - s.padding, w0 = ow * s.stride - s.padding;
    float acc = 0.f;
    for (int kh = 0; kh < s.kernel; ++kh) {
      const int ih = h0 + kh;
      if (ih < 0 || ih >= s.h) continue;
      for (int kw = 0; kw < s.kernel; ++kw) {
        const int iw = w0 + kw;
        if (iw >= 0 && iw < s.w) acc += plane[ih * s.w + iw];
      }
    }
    out[o] = acc / divisor;
  }
}

__global__ void avg_pool2d_backward_kernel(Pool2dShape s, const float* grad_out, float* grad_in) {
  const int64_t total = s.planes * s.h * s.w;
  const float divisor = (float)(s.kernel * s.kernel);
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int iw = (int)(i % s.w);
    const int ih = (int)((i / s.w) % s.h);
    const int64_t p = i / ((int64_t)s.w * s.h);
    int oh_lo, oh_hi, ow_lo, ow_hi;
    covering(ih, s.kernel, s.stride, s.padding, s.out_h, oh_lo, oh_hi);
    covering(iw, s.kernel, s.stride, s.padding, s.out_w, ow_lo, ow_hi);
    const float* g = grad_out + p * s.out_h * s.out_w;
    float acc = 0.f;
    for (int oh = oh_lo; oh <= oh_hi; ++oh)
      for (int ow = ow_lo; ow <= ow_hi; ++ow) acc += g[oh * s.out_w + ow];
    grad_in[i] = acc / divisor;
  }
}

constexpr int kWarpsPerBlock = 8;

__global__ void global_avg_pool_forward_kernel(const float* x, float* out, int64_t planes, int64_t hw) {
  const int lane = threadIdx.x & 31;
  const int64_t p = (int64_t)blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  if (p >= planes) return;  // whole warp leaves together: the shuffles below stay full-warp
  const float* plane = x + p * hw;
  float acc = 0.f;
  for (int64_t i = lane; i < hw; i += 32) acc += plane[i];
  for (int off = 16; off > 0; off >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, off);
  if (lane == 0) out[p] = acc / (float)hw;
}

__global__ void global_avg_pool_backward_kernel(const float* grad_out, float* grad_in, int64_t planes, int64_t hw) {
  const int64_t total = planes * hw;
  const float inv = 1.f / (float)hw;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
    grad_in[i] = grad_out[i / hw] * inv;
}

}  // namespace

void max_pool2d_forward_f32(const Pool2dShape& s, const float* x, float* out, int32_t* argmax) {
  const int64_t n = s.planes * s.out_h * s.out_w;
  if (n == 0) return;
  max_pool2d_forward_kernel<<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(s, x, out, argmax);
  CUDA_CHECK_LAUNCH();
}

void max_pool2d_backward_f32(const Pool2dShape& s, const float* grad_out, const int32_t* argmax, float* grad_in) {
  const int64_t n = s.planes * s.h * s.w;
  if (n == 0) return;
  max_pool2d_backward_kernel<<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(s, grad_out, argmax, grad_in);
  CUDA_CHECK_LAUNCH();
}

void avg_pool2d_forward_f32(const Pool2dShape& s, const float* x, float* out) {
  const int64_t n = s.planes * s.out_h * s.out_w;
  if (n == 0) return;
  avg_pool2d_forward_kernel<<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(s, x, out);
  CUDA_CHECK_LAUNCH();
}

void avg_pool2d_backward_f32(const Pool2dShape& s, const float* grad_out, float* grad_in) {
  const int64_t n = s.planes * s.h * s.w;
  if (n == 0) return;
  avg_pool2d_backward_kernel<<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(s, grad_out, grad_in);
  CUDA_CHECK_LAUNCH();
}

void global_avg_pool_forward_f32(const float* x, float* out, int64_t planes, int64_t hw) {
  if (planes == 0) return;
  const unsigned blocks = (unsigned)((planes + kWarpsPerBlock - 1) / kWarpsPerBlock);
  global_avg_pool_forward_kernel<<<blocks, 32 * kWarpsPerBlock, 0, cuda::stream()>>>(x, out, planes, hw);
  CUDA_CHECK_LAUNCH();
}

void global_avg_pool_backward_f32(const float* grad_out, float* grad_in, int64_t planes, int64_t hw) {
  const int64_t n = planes * hw;
  if (n == 0) return;
  global_avg_pool_backward_kernel<<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(grad_out, grad_in, planes, hw);
  CUDA_CHECK_LAUNCH();
}

void register_pooling(CudaBackend& b) {
  b.max_pool2d_forward_f32 = max_pool2d_forward_f32;
  b.max_pool2d_backward_f32 = max_pool2d_backward_f32;
  b.avg_pool2d_forward_f32 = avg_pool2d_forward_f32;
  b.avg_pool2d_backward_f32 = avg_pool2d_backward_f32;
  b.global_avg_pool_forward_f32 = global_avg_pool_forward_f32;
  b.global_avg_pool_backward_f32 = global_avg_pool_backward_f32;
}

}  // namespace mdq::kernels

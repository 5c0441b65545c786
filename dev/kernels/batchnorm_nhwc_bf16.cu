// NHWC bf16 training BatchNorm (batchnorm_nhwc_bf16.h). Reductions over a (32-channel group x
// row chunk) grid: a block of 32 x 8 threads walks its chunk's rows eight at a time, each thread
// one channel, so a warp reads 32 consecutive channels of a row; the 8 row lanes are summed in a
// fixed order in shared memory and each block writes one partial per channel. A second kernel
// sums a channel's partials in chunk order. Elementwise passes take one element per thread in a
// grid-stride loop. Every expression that the CPU reference also computes is written with
// explicitly rounded intrinsics, so that no fused multiply-add changes its bits.
#include <cuda_bf16.h>

#include <algorithm>

#include "dev/kernels/batchnorm_nhwc_bf16.h"
#include "kernels/cuda_common.h"
#include "kernels/device_memory.h"

namespace mdq::dev {
namespace {

constexpr int kLanesC = 32, kLanesR = 8;

__device__ __forceinline__ float bf(uint16_t v) { return __uint_as_float(static_cast<uint32_t>(v) << 16); }
__device__ __forceinline__ uint16_t to_bf(float v) {
  const __nv_bfloat16 b = __float2bfloat16_rn(v);
  return *reinterpret_cast<const uint16_t*>(&b);
}
// x̂ = (x − mean)·invstd, rounded as the reference rounds it
__device__ __forceinline__ float xhat_of(float x, float mean, float invstd) { return __fmul_rn(__fsub_rn(x, mean), invstd); }

enum class Sum { X, CentredSquare, Backward };

// partial[chunk][c] (and partial2 for Backward: Σ g'·x̂) over rows [chunk·rows_per, (chunk+1)·rows_per)
template <Sum S>
__global__ void __launch_bounds__(kLanesC* kLanesR)
    partials_kernel(int64_t rows, int64_t C, int64_t rows_per, const uint16_t* x, const float* mean,
                    const float* invstd, const uint16_t* grad_out, const uint16_t* out, bool relu, float* partial,
                    float* partial2) {
  __shared__ float sh[kLanesR][kLanesC], sh2[kLanesR][kLanesC];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kLanesC + tx;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per, r1 = min(rows, r0 + rows_per);
  float acc = 0.f, acc2 = 0.f;
  if (c < C) {
    const float mu = S == Sum::X ? 0.f : mean[c];
    const float is = S == Sum::Backward ? invstd[c] : 0.f;
    for (int64_t r = r0 + ty; r < r1; r += kLanesR) {
      const int64_t i = r * C + c;
      const float v = bf(x[i]);
      if constexpr (S == Sum::X) {
        acc += v;
      } else if constexpr (S == Sum::CentredSquare) {
        const float d = __fsub_rn(v, mu);
        acc = __fadd_rn(acc, __fmul_rn(d, d));
      } else {
        const float g = relu && !(bf(out[i]) > 0.f) ? 0.f : bf(grad_out[i]);
        acc += g;
        acc2 = __fadd_rn(acc2, __fmul_rn(g, xhat_of(v, mu, is)));
      }
    }
  }
  sh[ty][tx] = acc;
  sh2[ty][tx] = acc2;
  __syncthreads();
  if (ty == 0 && c < C) {
    float s = 0.f, s2 = 0.f;
    for (int k = 0; k < kLanesR; ++k) {  // fixed order: deterministic
      s += sh[k][tx];
      s2 += sh2[k][tx];
    }
    partial[static_cast<int64_t>(blockIdx.y) * C + c] = s;
    if (S == Sum::Backward) partial2[static_cast<int64_t>(blockIdx.y) * C + c] = s2;
  }
}

// Σ over chunks, in chunk order
__device__ __forceinline__ float chunk_sum(const float* partial, int64_t chunks, int64_t C, int64_t c) {
  float s = 0.f;
  for (int64_t k = 0; k < chunks; ++k) s += partial[k * C + c];
  return s;
}

__global__ void mean_kernel(int64_t C, int64_t chunks, float m, const float* partial, float* mean) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c < C) mean[c] = __fdiv_rn(chunk_sum(partial, chunks, C, c), m);
}

__global__ void var_kernel(int64_t C, int64_t chunks, float m, float eps, float momentum, const float* partial,
                           const float* mean, float* invstd, float* running_mean, float* running_var) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const float var = __fdiv_rn(chunk_sum(partial, chunks, C, c), m);
  invstd[c] = 1.f / sqrtf(var + eps);
  if (running_mean) {
    const float unbiased = m > 1.f ? var * m / (m - 1.f) : var;
    running_mean[c] = (1.f - momentum) * running_mean[c] + momentum * mean[c];
    running_var[c] = (1.f - momentum) * running_var[c] + momentum * unbiased;
  }
}

__global__ void backward_sums_kernel(int64_t C, int64_t chunks, const float* partial, const float* partial2,
                                     float* sum_g, float* sum_gxhat) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  sum_g[c] = chunk_sum(partial, chunks, C, c);
  sum_gxhat[c] = chunk_sum(partial2, chunks, C, c);
}

__global__ void apply_kernel(int64_t n, int64_t C, const uint16_t* x, const uint16_t* residual, const float* mean,
                             const float* invstd, bool relu, uint16_t* out) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = i % C;
    float pre = xhat_of(bf(x[i]), mean[c], invstd[c]);
    if (residual) pre = __fadd_rn(pre, bf(residual[i]));
    out[i] = to_bf(relu && !(pre > 0.f) ? 0.f : pre);
  }
}

__global__ void backward_input_kernel(int64_t n, int64_t C, float m, const uint16_t* grad_out, const uint16_t* x,
                                      const uint16_t* out, const float* mean, const float* invstd, bool relu,
                                      const float* sum_g, const float* sum_gxhat, uint16_t* grad_in,
                                      uint16_t* grad_residual) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = i % C;
    const float g = relu && !(bf(out[i]) > 0.f) ? 0.f : bf(grad_out[i]);
    const float xhat = xhat_of(bf(x[i]), mean[c], invstd[c]);
    const float d = __fsub_rn(__fsub_rn(g, __fdiv_rn(sum_g[c], m)), __fmul_rn(xhat, __fdiv_rn(sum_gxhat[c], m)));
    grad_in[i] = to_bf(__fmul_rn(invstd[c], d));
    if (grad_residual) grad_residual[i] = to_bf(g);
  }
}

// Row chunks: enough blocks to fill the card (4 per SM over the channel groups), at least 64 rows each.
int64_t chunks_for(int64_t rows, int64_t C) {
  const int64_t groups = (C + kLanesC - 1) / kLanesC;
  const int64_t want = std::max<int64_t>(1, 4 * cuda::sm_count() / groups);
  return std::max<int64_t>(1, std::min(want, (rows + 63) / 64));
}

unsigned blocks_1d(int64_t n, int threads) { return static_cast<unsigned>(std::max<int64_t>(1, (n + threads - 1) / threads)); }

}  // namespace

void bn_nhwc_bf16_forward(const BnNhwcForward& a) {
  if (a.rows == 0 || a.c == 0) return;
  const int64_t chunks = chunks_for(a.rows, a.c), rows_per = (a.rows + chunks - 1) / chunks;
  kernels::DeviceScratch<float> partial(chunks * a.c);
  const dim3 grid(static_cast<unsigned>((a.c + kLanesC - 1) / kLanesC), static_cast<unsigned>(chunks));
  const dim3 block(kLanesC, kLanesR);
  const float m = static_cast<float>(a.rows);
  cudaStream_t st = cuda::stream();
  partials_kernel<Sum::X><<<grid, block, 0, st>>>(a.rows, a.c, rows_per, a.x, nullptr, nullptr, nullptr, nullptr,
                                                  false, partial.get(), nullptr);
  mean_kernel<<<blocks_1d(a.c, 256), 256, 0, st>>>(a.c, chunks, m, partial.get(), a.mean);
  partials_kernel<Sum::CentredSquare><<<grid, block, 0, st>>>(a.rows, a.c, rows_per, a.x, a.mean, nullptr, nullptr,
                                                              nullptr, false, partial.get(), nullptr);
  var_kernel<<<blocks_1d(a.c, 256), 256, 0, st>>>(a.c, chunks, m, a.eps, a.momentum, partial.get(), a.mean, a.invstd,
                                                  a.running_mean, a.running_var);
  const int64_t n = a.rows * a.c;
  apply_kernel<<<cuda::grid_for(n), 256, 0, st>>>(n, a.c, a.x, a.residual, a.mean, a.invstd, a.relu, a.out);
  CUDA_CHECK_LAUNCH();
}

void bn_nhwc_bf16_backward(const BnNhwcBackward& a) {
  if (a.rows == 0 || a.c == 0) return;
  const int64_t chunks = chunks_for(a.rows, a.c), rows_per = (a.rows + chunks - 1) / chunks;
  kernels::DeviceScratch<float> partial(2 * chunks * a.c);
  float* p1 = partial.get();
  float* p2 = p1 + chunks * a.c;
  const dim3 grid(static_cast<unsigned>((a.c + kLanesC - 1) / kLanesC), static_cast<unsigned>(chunks));
  const dim3 block(kLanesC, kLanesR);
  cudaStream_t st = cuda::stream();
  partials_kernel<Sum::Backward><<<grid, block, 0, st>>>(a.rows, a.c, rows_per, a.x, a.mean, a.invstd, a.grad_out,
                                                         a.out, a.relu, p1, p2);
  backward_sums_kernel<<<blocks_1d(a.c, 256), 256, 0, st>>>(a.c, chunks, p1, p2, a.sum_g, a.sum_gxhat);
  const int64_t n = a.rows * a.c;
  backward_input_kernel<<<cuda::grid_for(n), 256, 0, st>>>(n, a.c, static_cast<float>(a.rows), a.grad_out, a.x, a.out,
                                                           a.mean, a.invstd, a.relu, a.sum_g, a.sum_gxhat, a.grad_in,
                                                           a.grad_residual);
  CUDA_CHECK_LAUNCH();
}

}  // namespace mdq::dev

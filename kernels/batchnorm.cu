// Batch-norm kernels on NCHW f32 (or [N, C], HW = 1). Per-channel reductions run one block per
// channel over its M = N*HW elements; the elementwise passes use a grid-stride loop.
//
// Precision: every sum is in float. Each thread accumulates M/1024 elements sequentially, then a
// fixed-order shuffle tree combines the 1024 partials, so the error grows like (M/1024) ulp
// rather than M ulp and the result is the same bit for bit on every run.
// Speed: with only C blocks (often fewer than the SMs), each SM holds one block, so the block
// is as large as allowed (1024 threads) to keep enough loads in flight. The variance is two-pass
// (mean first, then sum (x - mean)^2): no cancellation of E[x^2] - E[x]^2 when |mean| >> std.
// Measured against the double CPU reference by tests/gpu/test_norm_act_pool_gpu.cpp.
#include "kernels/batchnorm.h"

#include "kernels/backend.h"
#include "kernels/cuda_common.h"

namespace mdq::kernels {
namespace {

constexpr int kReduceThreads = 1024;

// Sum of v over the block, returned to every thread. Fixed order: deterministic.
__device__ float block_sum(float v, float* shared /* kReduceThreads / 32 floats */) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  __syncthreads();  // shared may still be read by a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float total = 0.f;
  for (int w = 0; w < kReduceThreads / 32; ++w) total += shared[w];
  return total;
}

// Walks channel c's elements j = start, start + step, ... (j = n * hw + i, 0 <= j < M) without
// a 64-bit division per element: step = q * hw + r is split once.
struct ChannelWalk {
  int64_t n, i, q, r;
  __device__ ChannelWalk(const BatchNormShape& s, int64_t start, int64_t step)
      : n(start / s.hw), i(start % s.hw), q(step / s.hw), r(step % s.hw) {}
  __device__ bool valid(const BatchNormShape& s) const { return n < s.n; }
  __device__ int64_t offset(const BatchNormShape& s, int64_t c) const { return (n * s.c + c) * s.hw + i; }
  __device__ void next(const BatchNormShape& s) {
    n += q;
    i += r;
    if (i >= s.hw) {
      i -= s.hw;
      ++n;
    }
  }
};

__global__ void __launch_bounds__(kReduceThreads)
    stats_kernel(BatchNormShape s, const float* x, float eps, float momentum, float unbias, float* mean, float* invstd,
                 float* running_mean, float* running_var) {
  __shared__ float shared[kReduceThreads / 32];
  const int64_t c = blockIdx.x, m = s.n * s.hw;
  float acc = 0.f;
  for (ChannelWalk w(s, threadIdx.x, kReduceThreads); w.valid(s); w.next(s)) acc += x[w.offset(s, c)];
  const float mu = block_sum(acc, shared) / (float)m;
  float sq = 0.f;
  for (ChannelWalk w(s, threadIdx.x, kReduceThreads); w.valid(s); w.next(s)) {
    const float d = x[w.offset(s, c)] - mu;
    sq += d * d;
  }
  const float var = block_sum(sq, shared) / (float)m;  // biased: used to normalise
  if (threadIdx.x == 0) {
    mean[c] = mu;
    invstd[c] = 1.f / sqrtf(var + eps);
    if (running_mean) running_mean[c] = (1.f - momentum) * running_mean[c] + momentum * mu;
    if (running_var) running_var[c] = (1.f - momentum) * running_var[c] + momentum * var * unbias;
  }
}

__global__ void eval_stats_kernel(int64_t c, const float* running_mean, const float* running_var, float eps,
                                  float* mean, float* invstd) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < c; i += (int64_t)gridDim.x * blockDim.x) {
    mean[i] = running_mean[i];
    invstd[i] = 1.f / sqrtf(running_var[i] + eps);
  }
}

__global__ void apply_kernel(BatchNormShape s, const float* x, const float* mean, const float* invstd,
                             const float* weight, const float* bias, float* out) {
  const int64_t total = s.n * s.c * s.hw;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t c = (i / s.hw) % s.c;
    const float w = weight ? weight[c] : 1.f, b = bias ? bias[c] : 0.f;
    out[i] = (x[i] - mean[c]) * invstd[c] * w + b;
  }
}

__global__ void __launch_bounds__(kReduceThreads)
    backward_reduce_kernel(BatchNormShape s, const float* grad_out, const float* x, const float* mean,
                           const float* invstd, float* sum_g, float* sum_gxhat) {
  __shared__ float shared[kReduceThreads / 32];
  const int64_t c = blockIdx.x;
  const float mu = mean[c], is = invstd[c];
  float acc_g = 0.f, acc_gx = 0.f;
  for (ChannelWalk w(s, threadIdx.x, kReduceThreads); w.valid(s); w.next(s)) {
    const int64_t k = w.offset(s, c);
    const float g = grad_out[k];
    acc_g += g;
    acc_gx += g * (x[k] - mu) * is;
  }
  const float total_g = block_sum(acc_g, shared);
  const float total_gx = block_sum(acc_gx, shared);
  if (threadIdx.x == 0) {
    sum_g[c] = total_g;
    sum_gxhat[c] = total_gx;
  }
}

__global__ void backward_input_kernel(BatchNormShape s, bool training, const float* grad_out, const float* x,
                                      const float* mean, const float* invstd, const float* weight, const float* sum_g,
                                      const float* sum_gxhat, float* grad_in) {
  const int64_t total = s.n * s.c * s.hw;
  const float inv_m = 1.f / (float)(s.n * s.hw);
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t c = (i / s.hw) % s.c;
    const float scale = (weight ? weight[c] : 1.f) * invstd[c];
    if (training) {
      const float xhat = (x[i] - mean[c]) * invstd[c];
      grad_in[i] = scale * (grad_out[i] - sum_g[c] * inv_m - xhat * sum_gxhat[c] * inv_m);
    } else {
      grad_in[i] = scale * grad_out[i];
    }
  }
}

__global__ void __launch_bounds__(kReduceThreads)
    sync_partial_sums_kernel(BatchNormShape s, const float* x, const float* center, float* partial) {
  __shared__ float shared[kReduceThreads / 32];
  const int64_t c = blockIdx.x;
  const float mu = center ? center[c] / center[s.c] : 0.f;
  float acc = 0.f;
  for (ChannelWalk w(s, threadIdx.x, kReduceThreads); w.valid(s); w.next(s)) {
    const float d = x[w.offset(s, c)] - mu;
    acc += center ? d * d : d;
  }
  const float total = block_sum(acc, shared);
  if (threadIdx.x == 0) {
    partial[c] = total;
    if (c == 0) partial[s.c] = (float)(s.n * s.hw);
  }
}

__global__ void sync_finalize_kernel(int64_t c, const float* sum, const float* sumsq, float eps, float momentum,
                                     float* mean, float* invstd, float* running_mean, float* running_var) {
  const float m = sum[c];
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < c; i += (int64_t)gridDim.x * blockDim.x) {
    const float mu = sum[i] / m, var = sumsq[i] / m;
    mean[i] = mu;
    invstd[i] = 1.f / sqrtf(var + eps);
    if (running_mean) running_mean[i] = (1.f - momentum) * running_mean[i] + momentum * mu;
    if (running_var) running_var[i] = (1.f - momentum) * running_var[i] + momentum * var * (m / (m - 1.f));
  }
}

__global__ void sync_rescale_kernel(int64_t n, float* v, float m_local, const float* count) {
  const float f = m_local / count[0];
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) v[i] *= f;
}

}  // namespace

void sync_bn_partial_sums_f32(const BatchNormShape& s, const float* x, const float* center, float* partial) {
  if (s.c == 0) return;
  sync_partial_sums_kernel<<<(unsigned)s.c, kReduceThreads, 0, cuda::stream()>>>(s, x, center, partial);
  CUDA_CHECK_LAUNCH();
}

void sync_bn_finalize_f32(int64_t c, const float* sum, const float* sumsq, float eps, float momentum, float* mean,
                          float* invstd, float* running_mean, float* running_var) {
  if (c == 0) return;
  sync_finalize_kernel<<<cuda::grid_for(c), 256, 0, cuda::stream()>>>(c, sum, sumsq, eps, momentum, mean, invstd,
                                                                      running_mean, running_var);
  CUDA_CHECK_LAUNCH();
}

void sync_bn_rescale_f32(int64_t n, float* v, float m_local, const float* count) {
  if (n == 0) return;
  sync_rescale_kernel<<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(n, v, m_local, count);
  CUDA_CHECK_LAUNCH();
}

void batch_norm_stats_f32(const BatchNormShape& s, const float* x, float eps, float momentum, float* mean,
                          float* invstd, float* running_mean, float* running_var) {
  if (s.c == 0) return;
  const int64_t m = s.n * s.hw;
  const float unbias = m > 1 ? (float)((double)m / (double)(m - 1)) : 1.f;
  stats_kernel<<<(unsigned)s.c, kReduceThreads, 0, cuda::stream()>>>(s, x, eps, momentum, unbias, mean, invstd,
                                                                     running_mean, running_var);
  CUDA_CHECK_LAUNCH();
}

void batch_norm_eval_stats_f32(int64_t c, const float* running_mean, const float* running_var, float eps, float* mean,
                               float* invstd) {
  if (c == 0) return;
  eval_stats_kernel<<<cuda::grid_for(c), 256, 0, cuda::stream()>>>(c, running_mean, running_var, eps, mean, invstd);
  CUDA_CHECK_LAUNCH();
}

void batch_norm_apply_f32(const BatchNormShape& s, const float* x, const float* mean, const float* invstd,
                          const float* weight, const float* bias, float* out) {
  const int64_t n = s.n * s.c * s.hw;
  if (n == 0) return;
  apply_kernel<<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(s, x, mean, invstd, weight, bias, out);
  CUDA_CHECK_LAUNCH();
}

void batch_norm_backward_reduce_f32(const BatchNormShape& s, const float* grad_out, const float* x, const float* mean,
                                    const float* invstd, float* sum_g, float* sum_gxhat) {
  if (s.c == 0) return;
  backward_reduce_kernel<<<(unsigned)s.c, kReduceThreads, 0, cuda::stream()>>>(s, grad_out, x, mean, invstd, sum_g,
                                                                               sum_gxhat);
  CUDA_CHECK_LAUNCH();
}

void batch_norm_backward_input_f32(const BatchNormShape& s, bool training, const float* grad_out, const float* x,
                                   const float* mean, const float* invstd, const float* weight, const float* sum_g,
                                   const float* sum_gxhat, float* grad_in) {
  const int64_t n = s.n * s.c * s.hw;
  if (n == 0) return;
  backward_input_kernel<<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(s, training, grad_out, x, mean, invstd, weight,
                                                                       sum_g, sum_gxhat, grad_in);
  CUDA_CHECK_LAUNCH();
}

void batch_norm_forward_f32(const BatchNormForwardArgs& a) {
  if (a.training)
    batch_norm_stats_f32(a.s, a.x, a.eps, a.momentum, a.mean, a.invstd, a.running_mean, a.running_var);
  else
    batch_norm_eval_stats_f32(a.s.c, a.running_mean, a.running_var, a.eps, a.mean, a.invstd);
  batch_norm_apply_f32(a.s, a.x, a.mean, a.invstd, a.weight, a.bias, a.out);
}

void batch_norm_backward_f32(const BatchNormBackwardArgs& a) {
  if (a.sum_g) batch_norm_backward_reduce_f32(a.s, a.grad_out, a.x, a.mean, a.invstd, a.sum_g, a.sum_gxhat);
  batch_norm_backward_input_f32(a.s, a.training, a.grad_out, a.x, a.mean, a.invstd, a.weight, a.sum_g, a.sum_gxhat,
                                a.grad_in);
}

void register_batchnorm(CudaBackend& b) {
  b.batch_norm_forward_f32 = batch_norm_forward_f32;
  b.batch_norm_backward_f32 = batch_norm_backward_f32;
}

}  // namespace mdq::kernels

// Batch-norm kernels on NCHW f32 (or [N, C], HW = 1). Channel c's M = N*HW elements lie in N
// contiguous planes of HW floats, C*HW apart.
//
// Reductions (statistics, backward sums, sync BN's partial sums) run on a 2-D grid: blockIdx.x
// is the channel, blockIdx.y a chunk of the channel's M elements (a contiguous range of the
// flattened index n*HW + i, which may start and end mid-plane). One block per channel would leave
// most of a 132-SM card idle when C = 64..512, so each channel is split into chunks until there
// are about kTargetBlocks blocks (~8 per SM, one wave at 256 threads), but no chunk is shorter
// than kMinChunk elements, so the per-block reduction and the combine stay cheap. Each block
// writes one partial per (channel, chunk) to a scratch buffer laid out [C][chunks] (backward:
// [2][C][chunks], sum g then sum g (x - mean)); a second small kernel, one warp per channel,
// combines a channel's partials: lane l sums chunks l, l + 32, ... in order, then a fixed shuffle
// tree. No float atomics and no dependence on which block finishes first, so every result is the
// same bit for bit on every run. The chunk count depends on the shape only (not on the GPU), so
// the bits do not change across devices either; the float4 path (below) sums in a different order
// than the scalar one, so an unaligned view of the same data may differ in the last bits.
//
// Variance: two passes, as the CPU reference. Pass 1 writes partial sums of x; pass 2 blocks each
// combine their channel's pass-1 partials into the mean (the same fixed order in every block, so
// all agree; chunk 0 stores it) and write partial sums of (x - mean)^2; the combine kernel turns
// those into invstd and the running statistics. No E[x^2] - E[x]^2 cancellation when
// |mean| >> std. x is read twice, as before; at training sizes it does not fit in L2 anyway.
//
// Precision: every sum is in float. A thread adds about M / (chunks * 256) elements in sequence
// (float4 lanes pairwise first), then a fixed shuffle tree over 256 threads and one over the
// chunks: the error grows like (elements per thread + log2 of the rest) ulp, not M ulp.
// Measured against the double CPU reference by tests/gpu/test_ops_gpu.cpp (the op table of
// tests/ops/cases_norm_act.cpp), which also checks that two runs give the same bits.
//
// Elementwise passes (apply, backward input) walk planes: a plane (n, c) of HW floats gets
// 2^k threads (the smallest power of two >= HW/V, at most 256), a 256-thread block holds
// 256 / 2^k planes, so the channel is one remainder per plane and not a 64-bit division per
// element, and small planes (HW = 16, 49) still pack whole warps with contiguous loads. V = 4
// (float4) when HW % 4 == 0 and every pointer is 16-byte aligned, else scalar.
//
// Fused ReLU (Relu = true): apply writes max(0, pre); the backward kernels recompute pre from x
// with the same bn_pre call (one explicit fma, so contraction cannot make the two differ) and
// use g 1[pre > 0]. The mask costs no pass of its own: the reduction already reads x, and the
// input pass reads it in training. Only eval's input pass reads x for the mask alone.
// Scratch for the partials comes from the caching allocator: no cudaMalloc in steady state, and
// the block may be handed back right after the launches because all work is on one stream.
#include "kernels/batchnorm.h"
#include "kernels/batchnorm_common.cuh"

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/activation.h"
#include "kernels/backend.h"
#include "kernels/cuda_common.h"
#include "kernels/device_memory.h"

namespace mdq::kernels {
namespace {

constexpr int kThreads = 256;  // every kernel's block size
constexpr int kWarps = kThreads / 32;
constexpr int kUnroll = 4;                // loads a reduction thread keeps in flight
constexpr int64_t kTargetBlocks = 1024;   // reduction blocks aimed at (132 SMs x 8 resident)
constexpr int64_t kMinChunk = 4096;       // elements per reduction block, at least 16 a thread
constexpr int64_t kMaxGrid = 65535LL * 32;  // elementwise grids beyond this loop (grid stride)

// ---- V consecutive floats: one float4 or one float
template <int V>
struct Pack {
  float v[V];
};
template <int V>
__device__ __forceinline__ Pack<V> load(const float* p, int64_t unit) {
  Pack<V> r;
  if constexpr (V == 4) {
    const float4 q = reinterpret_cast<const float4*>(p)[unit];
    r.v[0] = q.x, r.v[1] = q.y, r.v[2] = q.z, r.v[3] = q.w;
  } else {
    r.v[0] = p[unit];
  }
  return r;
}
template <int V>
__device__ __forceinline__ void store(float* p, int64_t unit, const Pack<V>& r) {
  if constexpr (V == 4)
    reinterpret_cast<float4*>(p)[unit] = make_float4(r.v[0], r.v[1], r.v[2], r.v[3]);
  else
    p[unit] = r.v[0];
}
// Pairwise: (v0 + v1) + (v2 + v3).
template <int V>
__device__ __forceinline__ float pack_sum(const Pack<V>& r) {
  if constexpr (V == 4)
    return (r.v[0] + r.v[1]) + (r.v[2] + r.v[3]);
  else
    return r.v[0];
}

// ---- the affine map and the fused ReLU
struct ChannelAffine {
  float mu, scale, shift;  // pre = (x - mu) * scale + shift, scale = invstd * weight
};
__device__ __forceinline__ ChannelAffine channel_affine(int64_t c, const float* mean, const float* invstd,
                                                        const float* weight, const float* bias) {
  return {mean[c], invstd[c] * (weight ? weight[c] : 1.f), bias ? bias[c] : 0.f};
}
__device__ __forceinline__ float bn_pre(float x, const ChannelAffine& a) {
  return __fmaf_rn(x - a.mu, a.scale, a.shift);
}
using bn::relu_grad;
using bn::relu_of;
using bn::with_flag;

// ---- fixed-order sums
// Sum of v over the block, valid in thread 0. Fixed order: deterministic.
__device__ float block_sum(float v, float* shared /* kWarps floats */) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  __syncthreads();  // shared may still be read by a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float total = 0.f;
  if (threadIdx.x == 0)
    for (int w = 0; w < kWarps; ++w) total += shared[w];
  return total;
}

// Sum of p[0..n) by one whole warp, returned to every lane: lane l adds p[l], p[l + 32], ... in
// order, then a fixed shuffle tree. The combine of one channel's chunk partials.
__device__ float warp_total(const float* p, int n) {
  const int lane = threadIdx.x & 31;
  float v = 0.f;
  for (int i = lane; i < n; i += 32) v += p[i];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  return __shfl_sync(0xffffffffu, v, 0);
}

// ---- reductions over (channel, chunk)
// Channel c's elements in units of V floats (HW % V == 0): unit u = n * hw_v + i (0 <= u < units)
// lies at (n * C + c) * hw_v + i. Chunk k holds units [k * len, min((k + 1) * len, units)).
struct ReduceLayout {
  int64_t c, hw_v, units, len;
  int chunks;
  float m;  // elements per channel, N * HW
  // A thread's stride kThreads = q * hw_v + r, split once on the host: its offset advances by
  // jump = q * C * hw_v + r, plus wrap = (C - 1) * hw_v when i passes the end of a plane.
  int64_t r, jump, wrap;
};

ReduceLayout reduce_layout(const BatchNormShape& s, int v) {
  ReduceLayout L{};
  L.c = s.c;
  L.hw_v = s.hw / v;
  L.units = s.n * L.hw_v;
  L.m = static_cast<float>(s.n * s.hw);
  const int64_t m = s.n * s.hw;
  int64_t chunks = (kTargetBlocks + s.c - 1) / s.c;
  chunks = std::min(chunks, (m + kMinChunk - 1) / kMinChunk);
  chunks = std::max<int64_t>(chunks, 1);
  L.len = std::max<int64_t>((L.units + chunks - 1) / chunks, 1);
  L.chunks = static_cast<int>(std::max<int64_t>((L.units + L.len - 1) / L.len, 1));  // no empty chunk
  if (L.hw_v > 0) {
    const int64_t q = kThreads / L.hw_v;
    L.r = kThreads - q * L.hw_v;
    L.jump = q * s.c * L.hw_v + L.r;
    L.wrap = (s.c - 1) * L.hw_v;
  }
  return L;
}

// Calls visit(offset in units) for the units of chunk k of channel c that this thread owns:
// lo + t, lo + t + kThreads, ... Unrolled so that kUnroll loads are in flight at once.
template <class Visit>
__device__ __forceinline__ void for_chunk(const ReduceLayout& L, int64_t c, int64_t k, Visit visit) {
  const int64_t lo = k * L.len, hi = lo + L.len < L.units ? lo + L.len : L.units;
  int64_t u = lo + threadIdx.x;
  if (u >= hi) return;
  int64_t n = u / L.hw_v, i = u - n * L.hw_v;  // once per thread
  int64_t off = (n * L.c + c) * L.hw_v + i;
  auto advance = [&] {
    u += kThreads;
    i += L.r;
    off += L.jump;
    if (i >= L.hw_v) {
      i -= L.hw_v;
      off += L.wrap;
    }
  };
  while (u + (kUnroll - 1) * kThreads < hi) {
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) {
      visit(off);
      advance();
    }
  }
  for (; u < hi; advance()) visit(off);
}

enum class Centre {
  None,          // partial = sum x
  FromPartials,  // partial = sum (x - mu)^2, mu = (the channel's pass-1 partials combined) / M
  FromSums,      // partial = sum (x - mu)^2, mu = src[c] / src[C] (sync BN's reduced sums)
};

template <int V>
__global__ void __launch_bounds__(kThreads)
    moment_partials_kernel(ReduceLayout L, const float* __restrict__ x, Centre how, const float* __restrict__ src,
                           float* __restrict__ mean_out, float* __restrict__ partial) {
  __shared__ float shared[kWarps];
  __shared__ float centre;
  const int64_t c = blockIdx.x, k = blockIdx.y;
  float mu = 0.f;
  if (how == Centre::FromPartials) {
    if (threadIdx.x < 32) {
      const float t = warp_total(src + c * L.chunks, L.chunks) / L.m;
      if (threadIdx.x == 0) {
        centre = t;
        if (k == 0) mean_out[c] = t;  // every block of the channel got the same bits
      }
    }
    __syncthreads();
    mu = centre;
  } else if (how == Centre::FromSums) {
    mu = src[c] / src[L.c];
  }
  float acc = 0.f;
  if (how == Centre::None) {
    for_chunk(L, c, k, [&](int64_t o) { acc += pack_sum(load<V>(x, o)); });
  } else {
    for_chunk(L, c, k, [&](int64_t o) {
      Pack<V> d = load<V>(x, o);
#pragma unroll
      for (int j = 0; j < V; ++j) d.v[j] = (d.v[j] - mu) * (d.v[j] - mu);
      acc += pack_sum(d);
    });
  }
  const float total = block_sum(acc, shared);
  if (threadIdx.x == 0) partial[c * L.chunks + k] = total;
}

// partial[c][k] = sum g, partial[C + c][k] = sum g (x - mean[c]); invstd is applied once per
// channel in the combine. Relu: g 1[pre > 0] for g (invstd, weight, bias read for pre only).
template <int V, bool Relu>
__global__ void __launch_bounds__(kThreads)
    backward_partials_kernel(ReduceLayout L, const float* __restrict__ grad_out, const float* __restrict__ x,
                             const float* __restrict__ mean, const float* __restrict__ invstd,
                             const float* __restrict__ weight, const float* __restrict__ bias,
                             float* __restrict__ partial) {
  __shared__ float shared[kWarps];
  const int64_t c = blockIdx.x, k = blockIdx.y;
  const float mu = mean[c];
  ChannelAffine af{};
  if constexpr (Relu) af = channel_affine(c, mean, invstd, weight, bias);
  float acc_g = 0.f, acc_gx = 0.f;
  for_chunk(L, c, k, [&](int64_t o) {
    Pack<V> g = load<V>(grad_out, o);
    Pack<V> gx = load<V>(x, o);
#pragma unroll
    for (int j = 0; j < V; ++j) {
      if constexpr (Relu) g.v[j] = relu_grad(g.v[j], bn_pre(gx.v[j], af));
      gx.v[j] = g.v[j] * (gx.v[j] - mu);
    }
    acc_g += pack_sum(g);
    acc_gx += pack_sum(gx);
  });
  const float total_g = block_sum(acc_g, shared);
  const float total_gx = block_sum(acc_gx, shared);
  if (threadIdx.x == 0) {
    partial[c * L.chunks + k] = total_g;
    partial[(L.c + c) * L.chunks + k] = total_gx;
  }
}

// ---- combines: one warp per channel, kWarps channels a block
__device__ __forceinline__ int64_t warp_channel() { return blockIdx.x * (int64_t)kWarps + (threadIdx.x >> 5); }

__global__ void __launch_bounds__(kThreads)
    stats_finish_kernel(ReduceLayout L, const float* __restrict__ partial, float eps, float momentum, float unbias,
                        const float* __restrict__ mean, float* __restrict__ invstd, float* __restrict__ running_mean,
                        float* __restrict__ running_var) {
  const int64_t c = warp_channel();
  if (c >= L.c) return;  // whole warps
  const float var = warp_total(partial + c * L.chunks, L.chunks) / L.m;  // biased: used to normalise
  if ((threadIdx.x & 31) == 0) {
    const float mu = mean[c];
    invstd[c] = 1.f / sqrtf(var + eps);
    if (running_mean) running_mean[c] = (1.f - momentum) * running_mean[c] + momentum * mu;
    if (running_var) running_var[c] = (1.f - momentum) * running_var[c] + momentum * var * unbias;
  }
}

__global__ void __launch_bounds__(kThreads)
    backward_finish_kernel(ReduceLayout L, const float* __restrict__ partial, const float* __restrict__ invstd,
                           float* __restrict__ sum_g, float* __restrict__ sum_gxhat) {
  const int64_t c = warp_channel();
  if (c >= L.c) return;
  const float g = warp_total(partial + c * L.chunks, L.chunks);
  const float gx = warp_total(partial + (L.c + c) * L.chunks, L.chunks);
  if ((threadIdx.x & 31) == 0) {
    sum_g[c] = g;
    sum_gxhat[c] = gx * invstd[c];
  }
}

__global__ void __launch_bounds__(kThreads)
    sync_finish_kernel(ReduceLayout L, const float* __restrict__ partial, float* __restrict__ out) {
  const int64_t c = warp_channel();
  if (c >= L.c) return;
  const float t = warp_total(partial + c * L.chunks, L.chunks);
  if ((threadIdx.x & 31) == 0) {
    out[c] = t;
    if (c == 0) out[L.c] = L.m;
  }
}

// ---- elementwise, plane by plane
// Planes (n, c) of hw_v units; 2^shift threads a plane, kThreads >> shift planes a block.
struct PlaneLayout {
  int64_t planes, c, hw_v;
  int shift;
  bool narrow;  // planes < 2^32: the channel from a 32-bit remainder
};

PlaneLayout plane_layout(const BatchNormShape& s, int v) {
  PlaneLayout P{};
  P.planes = s.n * s.c;
  P.c = s.c;
  P.hw_v = s.hw / v;
  while ((int64_t{1} << P.shift) < P.hw_v && (1 << P.shift) < kThreads) ++P.shift;
  P.narrow = P.planes <= int64_t{0xffffffff};
  return P;
}

unsigned plane_grid(const PlaneLayout& P) {
  const int64_t per_block = kThreads >> P.shift;
  return static_cast<unsigned>(std::min((P.planes + per_block - 1) / per_block, kMaxGrid));
}

__device__ __forceinline__ int64_t channel_of(const PlaneLayout& P, int64_t plane) {
  return P.narrow ? static_cast<int64_t>(static_cast<uint32_t>(plane) % static_cast<uint32_t>(P.c)) : plane % P.c;
}

// Calls body(c, first unit, end unit, stride) for each plane this thread has a share of.
template <class Body>
__device__ __forceinline__ void for_planes(const PlaneLayout& P, Body body) {
  const int64_t per_block = kThreads >> P.shift, lane = threadIdx.x & ((1 << P.shift) - 1);
  for (int64_t p = blockIdx.x * per_block + (threadIdx.x >> P.shift); p < P.planes; p += gridDim.x * per_block)
    body(channel_of(P, p), p * P.hw_v + lane, (p + 1) * P.hw_v, int64_t{1} << P.shift);
}

template <int V, bool Relu>
__global__ void __launch_bounds__(kThreads)
    apply_kernel(PlaneLayout P, const float* x, const float* __restrict__ mean, const float* __restrict__ invstd,
                 const float* __restrict__ weight, const float* __restrict__ bias, float* out) {
  for_planes(P, [&](int64_t c, int64_t i, int64_t end, int64_t step) {
    const ChannelAffine af = channel_affine(c, mean, invstd, weight, bias);
    for (; i < end; i += step) {
      Pack<V> a = load<V>(x, i);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        a.v[j] = bn_pre(a.v[j], af);
        if constexpr (Relu) a.v[j] = relu_of(a.v[j]);
      }
      store<V>(out, i, a);
    }
  });
}

template <int V, bool Training, bool Relu>
__global__ void __launch_bounds__(kThreads)
    backward_input_kernel(PlaneLayout P, float inv_m, const float* grad_out, const float* x,
                          const float* __restrict__ mean, const float* __restrict__ invstd,
                          const float* __restrict__ weight, const float* __restrict__ bias,
                          const float* __restrict__ sum_g, const float* __restrict__ sum_gxhat, float* grad_in) {
  for_planes(P, [&](int64_t c, int64_t i, int64_t end, int64_t step) {
    const ChannelAffine af = channel_affine(c, mean, invstd, weight, bias);
    const float is = invstd[c], scale = af.scale;
    if constexpr (Training) {
      // g - sum_g/M - xhat sum_gxhat/M, with xhat = (x - mu) * invstd folded into one factor
      const float mu = af.mu, a = sum_g[c] * inv_m, b = sum_gxhat[c] * inv_m * is;
      for (; i < end; i += step) {
        Pack<V> g = load<V>(grad_out, i);
        const Pack<V> xv = load<V>(x, i);
#pragma unroll
        for (int j = 0; j < V; ++j) {
          if constexpr (Relu) g.v[j] = relu_grad(g.v[j], bn_pre(xv.v[j], af));
          g.v[j] = scale * (g.v[j] - a - (xv.v[j] - mu) * b);
        }
        store<V>(grad_in, i, g);
      }
    } else {
      for (; i < end; i += step) {
        Pack<V> g = load<V>(grad_out, i);
        if constexpr (Relu) {
          const Pack<V> xv = load<V>(x, i);
#pragma unroll
          for (int j = 0; j < V; ++j) g.v[j] = relu_grad(g.v[j], bn_pre(xv.v[j], af));
        }
#pragma unroll
        for (int j = 0; j < V; ++j) g.v[j] *= scale;
        store<V>(grad_in, i, g);
      }
    }
  });
}

// ---- small per-channel kernels
__global__ void eval_stats_kernel(int64_t c, const float* running_mean, const float* running_var, float eps,
                                  float* mean, float* invstd) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < c; i += (int64_t)gridDim.x * blockDim.x) {
    mean[i] = running_mean[i];
    invstd[i] = 1.f / sqrtf(running_var[i] + eps);
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

// ---- host helpers
using cuda::aligned16;
bool vec4(const BatchNormShape& s, const void* a, const void* b = nullptr, const void* c = nullptr,
          const void* d = nullptr) {
  return s.hw % 4 == 0 && aligned16(a) && aligned16(b) && aligned16(c) && aligned16(d);
}

dim3 reduce_grid(const ReduceLayout& L) { return dim3(static_cast<unsigned>(L.c), static_cast<unsigned>(L.chunks)); }
unsigned finish_grid(int64_t c) { return static_cast<unsigned>((c + kWarps - 1) / kWarps); }

void launch_moment_partials(const ReduceLayout& L, int v, const float* x, Centre how, const float* src,
                            float* mean_out, float* partial) {
  if (v == 4)
    moment_partials_kernel<4><<<reduce_grid(L), kThreads, 0, cuda::stream()>>>(L, x, how, src, mean_out, partial);
  else
    moment_partials_kernel<1><<<reduce_grid(L), kThreads, 0, cuda::stream()>>>(L, x, how, src, mean_out, partial);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void sync_bn_partial_sums_f32(const BatchNormShape& s, const float* x, const float* center, float* partial) {
  if (s.c == 0) return;
  const int v = vec4(s, x) ? 4 : 1;
  const ReduceLayout L = reduce_layout(s, v);
  DeviceScratch<float> scratch(s.c * L.chunks);
  launch_moment_partials(L, v, x, center ? Centre::FromSums : Centre::None, center, nullptr, scratch.get());
  sync_finish_kernel<<<finish_grid(s.c), kThreads, 0, cuda::stream()>>>(L, scratch.get(), partial);
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
  const int v = vec4(s, x) ? 4 : 1;
  const ReduceLayout L = reduce_layout(s, v);
  DeviceScratch<float> scratch(2 * s.c * L.chunks);  // [pass 1 | pass 2], each [C][chunks]
  float* sums = scratch.get();
  float* squares = sums + s.c * L.chunks;
  launch_moment_partials(L, v, x, Centre::None, nullptr, nullptr, sums);
  launch_moment_partials(L, v, x, Centre::FromPartials, sums, mean, squares);
  stats_finish_kernel<<<finish_grid(s.c), kThreads, 0, cuda::stream()>>>(L, squares, eps, momentum, unbias, mean,
                                                                         invstd, running_mean, running_var);
  CUDA_CHECK_LAUNCH();
}

void batch_norm_eval_stats_f32(int64_t c, const float* running_mean, const float* running_var, float eps, float* mean,
                               float* invstd) {
  if (c == 0) return;
  eval_stats_kernel<<<cuda::grid_for(c), 256, 0, cuda::stream()>>>(c, running_mean, running_var, eps, mean, invstd);
  CUDA_CHECK_LAUNCH();
}

void batch_norm_apply_f32(const BatchNormShape& s, const float* x, const float* mean, const float* invstd,
                          const float* weight, const float* bias, bool relu, float* out) {
  if (s.n * s.c * s.hw == 0) return;
  const bool v4 = vec4(s, x, out);
  const PlaneLayout P = plane_layout(s, v4 ? 4 : 1);
  with_flag(v4, [&](auto vec) {
    with_flag(relu, [&](auto r) {
      apply_kernel<decltype(vec)::value ? 4 : 1, decltype(r)::value>
          <<<plane_grid(P), kThreads, 0, cuda::stream()>>>(P, x, mean, invstd, weight, bias, out);
    });
  });
  CUDA_CHECK_LAUNCH();
}

void batch_norm_backward_reduce_f32(const BatchNormShape& s, const float* grad_out, const float* x, const float* mean,
                                    const float* invstd, const float* weight, const float* bias, bool relu,
                                    float* sum_g, float* sum_gxhat) {
  if (s.c == 0) return;
  const bool v4 = vec4(s, grad_out, x);
  const ReduceLayout L = reduce_layout(s, v4 ? 4 : 1);
  DeviceScratch<float> scratch(2 * s.c * L.chunks);
  with_flag(v4, [&](auto vec) {
    with_flag(relu, [&](auto r) {
      backward_partials_kernel<decltype(vec)::value ? 4 : 1, decltype(r)::value>
          <<<reduce_grid(L), kThreads, 0, cuda::stream()>>>(L, grad_out, x, mean, invstd, weight, bias, scratch.get());
    });
  });
  CUDA_CHECK_LAUNCH();
  backward_finish_kernel<<<finish_grid(s.c), kThreads, 0, cuda::stream()>>>(L, scratch.get(), invstd, sum_g,
                                                                            sum_gxhat);
  CUDA_CHECK_LAUNCH();
}

void batch_norm_backward_input_f32(const BatchNormShape& s, bool training, const float* grad_out, const float* x,
                                   const float* mean, const float* invstd, const float* weight, const float* bias,
                                   bool relu, const float* sum_g, const float* sum_gxhat, float* grad_in) {
  if (s.n * s.c * s.hw == 0) return;
  const bool v4 = vec4(s, grad_out, training || relu ? x : nullptr, grad_in);
  const PlaneLayout P = plane_layout(s, v4 ? 4 : 1);
  const float inv_m = 1.f / (float)(s.n * s.hw);
  const unsigned grid = plane_grid(P);
  with_flag(v4, [&](auto vec) {
    with_flag(training, [&](auto t) {
      with_flag(relu, [&](auto r) {
        backward_input_kernel<decltype(vec)::value ? 4 : 1, decltype(t)::value, decltype(r)::value>
            <<<grid, kThreads, 0, cuda::stream()>>>(P, inv_m, grad_out, x, mean, invstd, weight, bias, sum_g,
                                                    sum_gxhat, grad_in);
      });
    });
  });
  CUDA_CHECK_LAUNCH();
}

void batch_norm_forward_f32(const BatchNormForwardArgs& a) {
  if (a.training)
    batch_norm_stats_f32(a.s, a.x, a.eps, a.momentum, a.mean, a.invstd, a.running_mean, a.running_var);
  else
    batch_norm_eval_stats_f32(a.s.c, a.running_mean, a.running_var, a.eps, a.mean, a.invstd);
  batch_norm_apply_f32(a.s, a.x, a.mean, a.invstd, a.weight, a.bias, a.relu, a.out);
}

void batch_norm_backward_f32(const BatchNormBackwardArgs& a) {
  if (a.sum_g)
    batch_norm_backward_reduce_f32(a.s, a.grad_out, a.x, a.mean, a.invstd, a.weight, a.bias, a.relu, a.sum_g,
                                   a.sum_gxhat);
  batch_norm_backward_input_f32(a.s, a.training, a.grad_out, a.x, a.mean, a.invstd, a.weight, a.bias, a.relu,
                                a.sum_g, a.sum_gxhat, a.grad_in);
}

void register_batchnorm(CudaBackend& b) {
  b.batch_norm_forward_f32 = batch_norm_forward_f32;
  b.batch_norm_backward_f32 = batch_norm_backward_f32;
}

}  // namespace mdq::kernels

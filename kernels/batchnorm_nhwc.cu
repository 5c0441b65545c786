// Training and evaluation BatchNorm on NHWC bf16 activations (kernels/batchnorm.h,
// BatchNormNhwcForwardArgs): x, out, grad_out, grad_in are bf16 [rows][C] with the channel
// innermost; statistics, sums, weight and bias f32. With M = rows, for each channel c:
//   training: mean = (1/M) Σ x,  var = (1/M) Σ (x − mean)²  (two passes, as the CPU reference),
//             invstd = 1/√(var + eps),  running_mean ← (1−m)·running_mean + m·mean,
//             running_var ← (1−m)·running_var + m·var·M/(M−1)
//   eval:     mean = running_mean, invstd = 1/√(running_var + eps)
//   pre = (x − mean)·invstd·weight + bias  (one explicit fma: (x − mean)·(invstd·weight) + bias),
//   out = bf16(relu ? max(0, pre) : pre)
// Backward, g' = g·1[pre > 0] when relu (pre recomputed from x by the same fma, so the mask is
// the forward's bit for bit), else g; x̂ = (x − mean)·invstd:
//   sum_g = Σ g',  sum_gx̂ = Σ g'·x̂  (= invstd·Σ g'·(x − mean), invstd applied once per channel)
//   training: grad_in = bf16(weight·invstd·(g' − sum_g/M − x̂·sum_gx̂/M));  eval: bf16(weight·invstd·g')
// Everything accumulates in f32; each bf16 output is rounded once (to nearest even).
//
// Grid. Each thread owns V fixed consecutive channels of a row: V = 8 (one 16-byte load or store
// of 8 bf16) when C % 8 == 0 and every bf16 pointer is 16-byte aligned (row r starts r·C·2 bytes
// in, a multiple of 16), else V = 1 (any C). A block of 256 threads covers a slice of the
// channels, at most 64 (128 bytes of each row), as tg threads (V channels each) times
// rl = 256 / tg row lanes, and walks a chunk of rows rl at a time, with 8 rows in flight per
// thread in the reductions (loads kept packed until used) and 4 in the elementwise passes.
// For C = 64 a block reads 32 whole rows (4 KiB, contiguous) per step; for C = 512 eight slices
// each read 128 contiguous bytes of every row. The threads' channels never change, so there is
// no per-element division or modulo, and per-channel constants (mean, scale, shift) sit in
// registers. The grid is (slices, row chunks), the slice fastest, so blocks launched together
// read neighbouring bytes. Chunk counts depend on the shape only (not on the GPU), so the
// results are the same bits on every device: reductions aim at ~256 blocks (two per SM on 132
// SMs), at most 128 chunks a slice and at least 8 row steps a thread; elementwise passes take 8
// row steps a thread and as many blocks as that gives. Measured on an H200 (bench_batchnorm_layouts,
// 2026-12-02; slice widths 16/32/64/128 channels, 256 to 2048 target blocks, 4/8/16 rows in
// flight tried): at ResNet-18's CIFAR shapes of 16 MB and more, forward (x read three times, out
// written) runs at 1.4-1.7x and backward (g and x read twice, grad_in written) at 1.15-1.5x the
// copy-bandwidth time of its bytes; tensors of a few MB are bound by the kernels' latency
// (~4 us each on the GPU, more between launches outside a CUDA graph).
//
// Reductions (statistics, backward sums) are deterministic, with no float atomics: each thread
// sums its rows in order; the block adds its row lanes in lane order through shared memory and
// writes one partial per (slice, chunk, channel); the block that finishes its slice last (an
// integer ticket, atomicAdd) adds the slice's partials in chunk order (k-lanes k, k + KL, ...,
// then lanes in order) and finishes the channel: mean; invstd and the running statistics;
// sum_g and sum_gx̂. No separate combine kernel: training forward is three launches (Σx,
// Σ(x − mean)², apply), backward two (the sums, grad_in). The tickets are a static device
// array, zero at load and put back to zero by each slice's last block: sound because every
// launch is queued on the one stream (cuda::stream()), so no two of these kernels overlap.
//
// Caching: the second statistics pass walks the chunks in reverse (the rows the first pass read
// last are the ones still in L2), the apply pass forward again; the backward input pass walks in
// reverse after the forward-order sums. The partial sums come from the caching allocator
// (DeviceScratch); the block may go back right after the launches (one stream).
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "common/error.h"
#include "kernels/activation.h"
#include "kernels/backend.h"
#include "kernels/batchnorm.h"
#include "kernels/batchnorm_common.cuh"
#include "kernels/bf16.cuh"
#include "kernels/cuda_common.h"
#include "kernels/device_memory.h"

namespace mdq::kernels {
namespace {

constexpr int kThreads = 256;     // every kernel's block size
constexpr int kReduceUnroll = 8;  // rows a reduction thread has in flight
constexpr int kApplyUnroll = 4;   // rows an elementwise thread has in flight
constexpr int kBatch = 16;        // loads in flight while a block adds up partial sums
constexpr int kMaxSlices = 8192;  // channel slices (tickets); C beyond 8192 x 256 x V is refused

// The launch shape, chosen from the shape only (see the head comment).
constexpr int kSliceChannels = 64;     // channels a block covers, at most (128 bytes of each row)
constexpr int64_t kTargetBlocks = 256;  // reduction blocks aimed at
constexpr int64_t kMaxChunks = 128;     // row chunks a slice, at most (bounds the last block's combine)
constexpr int64_t kMinSteps = 8;        // row steps a reduction thread takes, at least
constexpr int64_t kElemSteps = 8;       // row steps an elementwise thread takes

// Tickets of the slices' last blocks; zero between launches.
__device__ unsigned int g_tickets[kMaxSlices];

// Threads cover channel slices of tg groups of V channels, rl = kThreads / tg row lanes; chunk
// k of a slice holds rows [k * len, min((k + 1) * len, rows)), len a multiple of rl.
struct Layout {
  int64_t rows, c;
  int64_t groups;  // C / V
  int tg, rl, slices;
  int chunks;
  int64_t len;
  float m;  // rows, the element count of a channel
};

Layout make_layout(int64_t rows, int64_t c, int v, bool reduction) {
  Layout L{};
  L.rows = rows;
  L.c = c;
  L.m = static_cast<float>(rows);
  L.groups = c / v;
  int64_t tg = std::max<int64_t>(1, std::min<int64_t>(L.groups, kSliceChannels / v));
  int64_t slices = (L.groups + tg - 1) / tg;
  if (slices > kMaxSlices) slices = kMaxSlices;
  tg = (L.groups + slices - 1) / slices;  // balanced slices
  MDQ_CHECK(tg <= kThreads, "batch_norm (NHWC bf16): " << c << " channels are more than it supports");
  slices = (L.groups + tg - 1) / tg;
  L.tg = static_cast<int>(tg);
  L.slices = static_cast<int>(slices);
  L.rl = kThreads / L.tg;
  const int64_t steps_all = (rows + L.rl - 1) / L.rl;  // row steps for one block to cover every row
  int64_t steps;
  const int64_t unroll = reduction ? kReduceUnroll : kApplyUnroll;
  if (reduction) {
    const int64_t chunks = std::min((kTargetBlocks + slices - 1) / slices, kMaxChunks);
    steps = std::max(kMinSteps, (steps_all + chunks - 1) / chunks);
  } else {
    steps = std::max(kElemSteps, (steps_all + 65534) / 65535);  // grid.y <= 65535
  }
  steps = (steps + unroll - 1) / unroll * unroll;  // whole batches of loads but in the last chunk
  L.len = steps * L.rl;
  L.chunks = static_cast<int>(std::max<int64_t>(1, (rows + L.len - 1) / L.len));
  return L;
}

// ---- the affine map and the fused ReLU: pre = (x - mu) * scale + shift, scale = invstd * weight,
// one explicit fma wherever it is evaluated (apply, both backward passes), so the masks agree.
__device__ __forceinline__ float bn_pre(float x, float mu, float scale, float shift) {
  return __fmaf_rn(x - mu, scale, shift);
}
using bn::relu_grad;
using bn::relu_of;
using bn::with_flag;

// A thread's place: slice blockIdx.x, group g of the slice's tg, row lane lane_r; active when
// its lane and its group exist (the last slice may be narrower, tg may not divide kThreads).
struct Place {
  int64_t c0;  // first channel
  int lane_r;
  bool active;
};
__device__ __forceinline__ Place place_of(const Layout& L, int v) {
  const int gl = static_cast<int>(threadIdx.x) % L.tg, lane_r = static_cast<int>(threadIdx.x) / L.tg;
  const int64_t g = static_cast<int64_t>(blockIdx.x) * L.tg + gl;
  return {g * v, lane_r, lane_r < L.rl && g < L.groups};
}

// Walks the rows of chunk k that this thread owns (lane_r, + rl, ...), U at a time: load(u,
// offset) for each of them that exists, then use(u, offset) for the same, so U loads are in
// flight (also in the chunk's last, partial batch). offset is the element index of the thread's
// first channel in that row. Rows are used in order.
template <int U, class Load, class Use>
__device__ __forceinline__ void for_rows(const Layout& L, int64_t k, const Place& p, Load load, Use use) {
  const int64_t end = k * L.len + L.len, r1 = end < L.rows ? end : L.rows, rl = L.rl, step = rl * L.c;
  int64_t off = (k * L.len + p.lane_r) * L.c + p.c0;
  for (int64_t r = k * L.len + p.lane_r; r < r1; r += U * rl, off += U * step) {
    bool ok[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      ok[u] = r + u * rl < r1;
      if (ok[u]) load(u, off + u * step);
    }
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (ok[u]) use(u, off + u * step);
  }
}

// s + p[0] + p[stride] + ... + p[(n - 1) stride], in that order, kBatch loads in flight.
template <bool Global>
__device__ __forceinline__ float ordered_sum(const float* p, int n, int64_t stride) {
  float s = 0.f;
  for (int i0 = 0; i0 < n; i0 += kBatch) {
    float v[kBatch];
#pragma unroll
    for (int i = 0; i < kBatch; ++i) {
      const float* q = p + (i0 + i) * stride;
      v[i] = i0 + i < n ? (Global ? __ldcg(q) : *q) : 0.f;
    }
#pragma unroll
    for (int i = 0; i < kBatch; ++i) s += v[i];
  }
  return s;
}

// ---- reductions
enum class Pass {
  Sum,       // Σ x -> mean
  Centred,   // Σ (x - mean)² -> invstd, running statistics
  Backward,  // Σ g', Σ g' (x - mean) -> sum_g, sum_gxhat
};

struct Finish {
  float* mean;    // Sum: written; Centred, Backward: read
  float* invstd;  // Centred: written; Backward: read
  float* running_mean;
  float* running_var;
  float eps, momentum, unbias;
  float* sum_g;
  float* sum_gxhat;
};

// The end of one output of a slice: o in [0, NS * W), W = tg * V, ordered (quantity, lane j of
// the V, group): consecutive o are consecutive groups, so the block's shared-memory reads and
// partial writes are conflict-free and coalesced.
template <int V, Pass P>
__device__ __forceinline__ void finish_channel(const Layout& L, const Finish& f, int o, float total) {
  const int w = L.tg * V, q = o / w, rem = o - q * w, j = rem / L.tg, gl = rem - j * L.tg;
  const int64_t g = static_cast<int64_t>(blockIdx.x) * L.tg + gl;
  if (g >= L.groups) return;
  const int64_t c = g * V + j;
  if constexpr (P == Pass::Sum) {
    f.mean[c] = total / L.m;
  } else if constexpr (P == Pass::Centred) {
    const float var = total / L.m;  // biased: normalises
    f.invstd[c] = 1.f / sqrtf(var + f.eps);
    if (f.running_mean) f.running_mean[c] = (1.f - f.momentum) * f.running_mean[c] + f.momentum * f.mean[c];
    if (f.running_var) f.running_var[c] = (1.f - f.momentum) * f.running_var[c] + f.momentum * var * f.unbias;
  } else {
    if (q == 0) {
      if (f.sum_g) f.sum_g[c] = total;
    } else if (f.sum_gxhat) {
      f.sum_gxhat[c] = total * f.invstd[c];
    }
  }
}

template <int V, Pass P, bool Relu>
__global__ void __launch_bounds__(kThreads)
    reduce_kernel(Layout L, const uint16_t* __restrict__ x, const uint16_t* __restrict__ grad_out,
                  const float* __restrict__ weight, const float* __restrict__ bias, float* __restrict__ partial,
                  Finish f) {
  constexpr int NS = P == Pass::Backward ? 2 : 1;  // quantities summed
  __shared__ float red[NS * V * kThreads];
  __shared__ bool last;
  const int t = threadIdx.x;
  const int64_t k = P == Pass::Centred ? L.chunks - 1 - static_cast<int64_t>(blockIdx.y) : blockIdx.y;
  const Place p = place_of(L, V);
  float acc[NS][V];
#pragma unroll
  for (int q = 0; q < NS; ++q)
#pragma unroll
    for (int j = 0; j < V; ++j) acc[q][j] = 0.f;
  if (p.active) {
    float mu[V], scale[V], shift[V];
#pragma unroll
    for (int j = 0; j < V; ++j) {
      mu[j] = P == Pass::Sum ? 0.f : f.mean[p.c0 + j];
      scale[j] = Relu ? f.invstd[p.c0 + j] * (weight ? weight[p.c0 + j] : 1.f) : 0.f;
      shift[j] = Relu && bias ? bias[p.c0 + j] : 0.f;
    }
    Bf16Raw<V> xr[kReduceUnroll], gr[kReduceUnroll];
    for_rows<kReduceUnroll>(
        L, k, p,
        [&](int u, int64_t off) {
          xr[u] = load_raw<V>(x + off);
          if constexpr (P == Pass::Backward) gr[u] = load_raw<V>(grad_out + off);
        },
        [&](int u, int64_t) {
          float xv[V], gv[V];
          widen<V>(xr[u], xv);
          if constexpr (P == Pass::Backward) widen<V>(gr[u], gv);
#pragma unroll
          for (int j = 0; j < V; ++j) {
            if constexpr (P == Pass::Sum) {
              acc[0][j] += xv[j];
            } else if constexpr (P == Pass::Centred) {
              const float d = xv[j] - mu[j];
              acc[0][j] = __fmaf_rn(d, d, acc[0][j]);
            } else {
              float g = gv[j];
              if constexpr (Relu) g = relu_grad(g, bn_pre(xv[j], mu[j], scale[j], shift[j]));
              acc[0][j] += g;
              acc[NS - 1][j] = __fmaf_rn(g, xv[j] - mu[j], acc[NS - 1][j]);
            }
          }
        });
  }
  // The block's row lanes, in lane order: red[(q V + j) kThreads + t] holds thread t's sum.
#pragma unroll
  for (int q = 0; q < NS; ++q)
#pragma unroll
    for (int j = 0; j < V; ++j) red[(q * V + j) * kThreads + t] = acc[q][j];
  __syncthreads();
  const int w = L.tg * V, n_out = NS * w;
  float* mine = partial + (static_cast<int64_t>(blockIdx.x) * L.chunks + k) * n_out;
  for (int o = t; o < n_out; o += kThreads) {
    const int q = o / w, rem = o - q * w, j = rem / L.tg, gl = rem - j * L.tg;
    mine[o] = ordered_sum<false>(red + (q * V + j) * kThreads + gl, L.rl, L.tg);
  }

  // The slice's last block adds the slice's partials in chunk order.
  __threadfence();
  __syncthreads();
  if (t == 0) last = atomicAdd(&g_tickets[blockIdx.x], 1u) == static_cast<unsigned>(L.chunks - 1);
  __syncthreads();
  if (!last) return;
  __threadfence();
  const float* all = partial + static_cast<int64_t>(blockIdx.x) * L.chunks * n_out;
  if (n_out <= kThreads) {
    // KL k-lanes: lane kl adds chunks kl, kl + KL, ... (coalesced across o), then the lanes in order.
    const int kl_n = kThreads / n_out, o = t % n_out, kl = t / n_out;
    if (kl < kl_n)
      red[kl * n_out + o] =
          ordered_sum<true>(all + static_cast<int64_t>(kl) * n_out + o, (L.chunks - kl + kl_n - 1) / kl_n,
                            static_cast<int64_t>(kl_n) * n_out);
    __syncthreads();
    if (t < n_out) {
      float s = 0.f;
      for (int i = 0; i < kl_n; ++i) s += red[i * n_out + t];
      finish_channel<V, P>(L, f, t, s);
    }
  } else {
    for (int oo = t; oo < n_out; oo += kThreads)
      finish_channel<V, P>(L, f, oo, ordered_sum<true>(all + oo, L.chunks, n_out));
  }
  if (t == 0) g_tickets[blockIdx.x] = 0;  // no other block of this launch touches it any more
}

// ---- elementwise passes
// Per-thread channel constants: mean, scale = invstd * weight, shift = bias. Eval reads the
// running statistics and computes invstd itself (the same expression in every block), and the
// first chunk's first row lane writes mean and invstd.
template <int V, bool Eval>
__device__ __forceinline__ void channel_constants(const Place& p, const float* mean, const float* invstd,
                                                  const float* weight, const float* bias, float eps, float* mean_out,
                                                  float* invstd_out, float (&mu)[V], float (&is)[V],
                                                  float (&scale)[V], float (&shift)[V]) {
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const int64_t c = p.c0 + j;
    mu[j] = mean[c];
    is[j] = Eval ? 1.f / sqrtf(invstd[c] + eps) : invstd[c];  // eval: invstd holds running_var
    scale[j] = is[j] * (weight ? weight[c] : 1.f);
    shift[j] = bias ? bias[c] : 0.f;
    if (Eval && blockIdx.y == 0 && p.lane_r == 0) {
      mean_out[c] = mu[j];
      invstd_out[c] = is[j];
    }
  }
}

template <int V, bool Relu, bool Eval>
__global__ void __launch_bounds__(kThreads)
    apply_kernel(Layout L, const uint16_t* __restrict__ x, const float* mean, const float* invstd,
                 const float* __restrict__ weight, const float* __restrict__ bias, float eps, float* mean_out,
                 float* invstd_out, uint16_t* __restrict__ out) {
  const Place p = place_of(L, V);
  if (!p.active) return;
  float mu[V], is[V], scale[V], shift[V];
  channel_constants<V, Eval>(p, mean, invstd, weight, bias, eps, mean_out, invstd_out, mu, is, scale, shift);
  Bf16Raw<V> xr[kApplyUnroll];
  for_rows<kApplyUnroll>(
      L, blockIdx.y, p, [&](int u, int64_t off) { xr[u] = load_raw<V>(x + off); },
      [&](int u, int64_t off) {
        float y[V];
        widen<V>(xr[u], y);
#pragma unroll
        for (int j = 0; j < V; ++j) {
          y[j] = bn_pre(y[j], mu[j], scale[j], shift[j]);
          if constexpr (Relu) y[j] = relu_of(y[j]);
        }
        store_bf16<V>(out + off, y);
      });
}

// grad_in = scale (g' - sum_g/M - (x - mu) invstd sum_gxhat/M) in training, scale g' in eval.
template <int V, bool Training, bool Relu>
__global__ void __launch_bounds__(kThreads)
    backward_input_kernel(Layout L, const uint16_t* __restrict__ grad_out, const uint16_t* __restrict__ x,
                          const float* __restrict__ mean, const float* __restrict__ invstd,
                          const float* __restrict__ weight, const float* __restrict__ bias,
                          const float* __restrict__ sum_g, const float* __restrict__ sum_gxhat,
                          uint16_t* __restrict__ grad_in) {
  const Place p = place_of(L, V);
  if (!p.active) return;
  const float inv_m = 1.f / L.m;
  float mu[V], is[V], scale[V], shift[V], a[V], b[V];
  channel_constants<V, false>(p, mean, invstd, weight, bias, 0.f, nullptr, nullptr, mu, is, scale, shift);
#pragma unroll
  for (int j = 0; j < V; ++j) {
    a[j] = Training ? sum_g[p.c0 + j] * inv_m : 0.f;
    b[j] = Training ? sum_gxhat[p.c0 + j] * inv_m * is[j] : 0.f;  // x̂ sum_gx̂/M = (x - mu) b
  }
  constexpr bool kReadX = Training || Relu;
  Bf16Raw<V> gr[kApplyUnroll], xr[kApplyUnroll];
  const int64_t k = L.chunks - 1 - static_cast<int64_t>(blockIdx.y);  // reverse: the sums read these last
  for_rows<kApplyUnroll>(
      L, k, p,
      [&](int u, int64_t off) {
        gr[u] = load_raw<V>(grad_out + off);
        if constexpr (kReadX) xr[u] = load_raw<V>(x + off);
      },
      [&](int u, int64_t off) {
        float y[V], xv[V];
        widen<V>(gr[u], y);
        if constexpr (kReadX) widen<V>(xr[u], xv);
#pragma unroll
        for (int j = 0; j < V; ++j) {
          float g = y[j];
          if constexpr (Relu) g = relu_grad(g, bn_pre(xv[j], mu[j], scale[j], shift[j]));
          if constexpr (Training)
            y[j] = scale[j] * (g - a[j] - (xv[j] - mu[j]) * b[j]);
          else
            y[j] = scale[j] * g;
        }
        store_bf16<V>(grad_in + off, y);
      });
}

// ---- host side

using cuda::aligned16;
bool vec8(int64_t c, const void* a, const void* b, const void* d = nullptr) {
  return c % 8 == 0 && aligned16(a) && aligned16(b) && aligned16(d);
}
dim3 grid_of(const Layout& L) { return dim3(static_cast<unsigned>(L.slices), static_cast<unsigned>(L.chunks)); }
int64_t partial_count(const Layout& L, int v, int ns) { return static_cast<int64_t>(L.slices) * L.chunks * ns * L.tg * v; }

template <int V>
void forward_v(const BatchNormNhwcForwardArgs& a) {
  cudaStream_t st = cuda::stream();
  if (a.training) {
    const Layout R = make_layout(a.rows, a.c, V, true);
    DeviceScratch<float> scratch(partial_count(R, V, 1));  // reused by the second pass
    Finish f{};
    f.mean = a.mean;
    f.invstd = a.invstd;
    f.running_mean = a.running_mean;
    f.running_var = a.running_var;
    f.eps = a.eps;
    f.momentum = a.momentum;
    f.unbias = a.rows > 1 ? static_cast<float>(static_cast<double>(a.rows) / static_cast<double>(a.rows - 1)) : 1.f;
    reduce_kernel<V, Pass::Sum, false><<<grid_of(R), kThreads, 0, st>>>(R, a.x, nullptr, nullptr, nullptr,
                                                                         scratch.get(), f);
    CUDA_CHECK_LAUNCH();
    reduce_kernel<V, Pass::Centred, false><<<grid_of(R), kThreads, 0, st>>>(R, a.x, nullptr, nullptr, nullptr,
                                                                             scratch.get(), f);
    CUDA_CHECK_LAUNCH();
  }
  const Layout E = make_layout(a.rows, a.c, V, false);
  with_flag(a.relu, [&](auto relu) {
    with_flag(a.training, [&](auto training) {
      constexpr bool kEval = !decltype(training)::value;
      apply_kernel<V, decltype(relu)::value, kEval><<<grid_of(E), kThreads, 0, st>>>(
          E, a.x, kEval ? a.running_mean : a.mean, kEval ? a.running_var : a.invstd, a.weight, a.bias, a.eps, a.mean,
          a.invstd, a.out);
    });
  });
  CUDA_CHECK_LAUNCH();
}

template <int V>
void backward_v(const BatchNormNhwcBackwardArgs& a) {
  cudaStream_t st = cuda::stream();
  // Training needs the sums for grad_in: scratch when the caller wants neither.
  const bool own_sums = a.training && (!a.sum_g || !a.sum_gxhat);
  DeviceScratch<float> sums(own_sums ? 2 * a.c : 1);
  float* sum_g = a.sum_g ? a.sum_g : (own_sums ? sums.get() : nullptr);
  float* sum_gxhat = a.sum_gxhat ? a.sum_gxhat : (own_sums ? sums.get() + a.c : nullptr);
  if (sum_g || sum_gxhat) {
    const Layout R = make_layout(a.rows, a.c, V, true);
    DeviceScratch<float> scratch(partial_count(R, V, 2));
    Finish f{};
    f.mean = const_cast<float*>(a.mean);  // read only in this pass
    f.invstd = const_cast<float*>(a.invstd);
    f.sum_g = sum_g;
    f.sum_gxhat = sum_gxhat;
    with_flag(a.relu, [&](auto relu) {
      reduce_kernel<V, Pass::Backward, decltype(relu)::value><<<grid_of(R), kThreads, 0, st>>>(
          R, a.x, a.grad_out, a.weight, a.bias, scratch.get(), f);
    });
    CUDA_CHECK_LAUNCH();
  }
  const Layout E = make_layout(a.rows, a.c, V, false);
  with_flag(a.training, [&](auto training) {
    with_flag(a.relu, [&](auto relu) {
      backward_input_kernel<V, decltype(training)::value, decltype(relu)::value><<<grid_of(E), kThreads, 0, st>>>(
          E, a.grad_out, a.x, a.mean, a.invstd, a.weight, a.bias, sum_g, sum_gxhat, a.grad_in);
    });
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void batch_norm_forward_nhwc_bf16(const BatchNormNhwcForwardArgs& a) {
  if (a.rows == 0 || a.c == 0) return;
  if (vec8(a.c, a.x, a.out))
    forward_v<8>(a);
  else
    forward_v<1>(a);
}

void batch_norm_backward_nhwc_bf16(const BatchNormNhwcBackwardArgs& a) {
  if (a.rows == 0 || a.c == 0) return;
  if (vec8(a.c, a.grad_out, a.x, a.grad_in))
    backward_v<8>(a);
  else
    backward_v<1>(a);
}

void register_batchnorm_nhwc(CudaBackend& b) {
  b.batch_norm_forward_nhwc_bf16 = batch_norm_forward_nhwc_bf16;
  b.batch_norm_backward_nhwc_bf16 = batch_norm_backward_nhwc_bf16;
}

}  // namespace mdq::kernels

// Depthwise convolution on NHWC bf16 activations (kernels/depthwise_nhwc.h states the math and
// the rounding). Memory-bound: each kernel reads its activations about once from DRAM.
//
// Grid. As the NHWC BatchNorm (kernels/batchnorm_nhwc.cu): each thread owns V consecutive
// channels of a pixel, V = 8 (one 16-byte load or store of 8 bf16) when C % 8 == 0 and every bf16
// pointer is 16-byte aligned (pixel p starts p·C·2 bytes in, a multiple of 16), else V = 1 (any
// C). A block of 256 threads covers a slice of at most 64 channels as tg groups (V channels each)
// times rl = 256 / tg pixel lanes, and walks a chunk of consecutive pixels rl at a time (lane l
// takes pixels l, l + rl, ... of the chunk): for C = 64 one step reads 32 neighbouring pixels,
// 4 KiB contiguous, and the taps that read a neighbour's pixel again find it in L1. The grid is
// (slices, chunks), the slice fastest, so blocks launched together read neighbouring bytes.
//
// Forward and backward-data gather: the forward walks the output pixels and reads its taps from
// x; backward-data walks the input pixels and reads, for each tap, the one output that tap fed
// (if any) from dy, so every result is written once by one thread, no atomics. Both stage the
// slice's filter, rounded to bf16, in shared memory as [tap][channel], so a thread reads its V
// weights of a tap as consecutive floats. The 3x3 filter (MobileNetV2's) is a template case
// whose tap loops unroll; other sizes loop at run time.
//
// Backward-filter is a deterministic two-step reduction (no float atomics): each thread keeps
// the sums of up to kTapSlice taps x V channels in registers while it walks its pixels (dy read
// once, x once per tap, mostly from L1); the block then adds its lanes in lane order through
// shared memory and writes one partial per (chunk, tap, channel); a second kernel adds the
// partials in chunk order. A filter of more than kTapSlice taps runs the first kernel once per
// slice of taps. Chunk counts depend on the shape only, so dw is the same bits on every run (and
// on every GPU of one architecture). The partials come from the caching allocator (DeviceScratch):
// no cudaMalloc in steady state and nothing that stops a CUDA graph capture.
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "common/error.h"
#include "kernels/bf16.cuh"
#include "kernels/cuda_common.h"
#include "kernels/depthwise_nhwc.h"
#include "kernels/device_memory.h"

namespace mdq::kernels {
namespace {

constexpr int kThreads = 256;         // every kernel's block size
constexpr int kSliceChannels = 64;    // channels a block covers, at most (128 bytes of each pixel)
constexpr int kWeightFloats = 12288;  // the staged filter of a slice, at most (48 KiB of shared memory)
constexpr int kTapSlice = 9;          // taps a backward-filter thread sums at once (registers: 9 x V)
// Chunks: forward and backward-data take at least kElemSteps pixel steps a thread (the staged
// filter is reused that often) and at most kMaxGridY chunks; backward-filter aims at
// kTargetBlocks blocks with at most kMaxChunks chunks a slice (the partials, and the combine's
// serial loads, grow with it) and at least kMinSteps steps a thread.
constexpr int64_t kElemSteps = 8;
constexpr int64_t kMaxGridY = 65535;
constexpr int64_t kTargetBlocks = 512;
constexpr int64_t kMaxChunks = 256;
constexpr int64_t kMinSteps = 16;
// The combine of the backward-filter partials: blocks of kSumChannels channels x kSumLanes lanes.
constexpr int kSumChannels = 32, kSumLanes = kThreads / kSumChannels;

// The convolution's sizes as the kernels read them, and one launch's shape (head comment).
struct Layout {
  int C, H, W, OH, OW, KH, KW, stride, pad, taps;
  int tg, rl;      // channel groups a slice (V channels each), pixel lanes
  int slices, chunks;
  int64_t pixels;  // the pixels the threads walk: output pixels (forward, dw), input pixels (dx)
  int64_t len;     // pixels a chunk, a multiple of rl
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

Layout make_layout(const Conv2dGeometry& g, int v, int64_t pixels, bool reduction) {
  Layout L{};
  L.C = int(g.C), L.H = int(g.H), L.W = int(g.W), L.OH = int(g.OH), L.OW = int(g.OW);
  L.KH = int(g.KH), L.KW = int(g.KW), L.stride = int(g.stride), L.pad = int(g.pad);
  L.taps = L.KH * L.KW;
  L.pixels = pixels;
  // Slices as wide as kSliceChannels allows, or as the staged filter does, then balanced.
  const int64_t groups = g.C / v;
  const int64_t max_width = std::min<int64_t>(kSliceChannels, kWeightFloats / L.taps);
  const int64_t max_tg = std::max<int64_t>(1, max_width / v);
  int64_t tg = std::min(groups, max_tg);
  const int64_t slices = ceil_div(groups, tg);
  tg = ceil_div(groups, slices);
  L.tg = int(tg);
  L.slices = int(slices);
  L.rl = kThreads / L.tg;
  const int64_t steps_all = ceil_div(pixels, L.rl);  // pixel steps for one block to walk them all
  int64_t steps;
  if (reduction) {
    const int64_t chunks = std::min(ceil_div(kTargetBlocks, slices), kMaxChunks);
    steps = std::max(kMinSteps, ceil_div(steps_all, chunks));
  } else {
    steps = std::max(kElemSteps, ceil_div(steps_all, kMaxGridY));
  }
  L.len = steps * L.rl;
  L.chunks = int(std::max<int64_t>(1, ceil_div(pixels, L.len)));
  return L;
}

// V = 8 when C % 8 == 0 and every bf16 operand is 16-byte aligned, else 1.
int vector_width(const Conv2dGeometry& g, std::initializer_list<const void*> bf16_operands) {
  if (g.C % 8 != 0) return 1;
  for (const void* p : bf16_operands)
    if (!cuda::aligned16(p)) return 1;
  return 8;
}

// Calls f(V, K) with V = 8 or 1 (vector width) and K = 3 (a 3x3 filter) or 0 (any other) as
// compile-time constants.
template <int N>
using Int = std::integral_constant<int, N>;
template <class F>
void with_shape(int v, bool k3, F f) {
  if (v == 8) {
    if (k3) f(Int<8>{}, Int<3>{});
    else f(Int<8>{}, Int<0>{});
  } else {
    if (k3) f(Int<1>{}, Int<3>{});
    else f(Int<1>{}, Int<0>{});
  }
}

// A thread's place: group g of slice blockIdx.x, pixel lane `lane`; active when its lane and its
// channels exist (the last slice may be narrower, tg may not divide kThreads).
struct Place {
  int c;  // its first channel
  int g, lane;
  bool active;
};
__device__ __forceinline__ Place place_of(const Layout& L, int v) {
  const int g = int(threadIdx.x) % L.tg, lane = int(threadIdx.x) / L.tg;
  const int c = (int(blockIdx.x) * L.tg + g) * v;
  return {c, g, lane, lane < L.rl && c < L.C};
}

// The pixels of chunk blockIdx.y that lane `lane` walks: begin, begin + rl, ... < end.
struct Walk {
  int64_t begin, end;
};
__device__ __forceinline__ Walk walk_of(const Layout& L, int lane) {
  const int64_t first = int64_t(blockIdx.y) * L.len;
  return {first + lane, first + L.len < L.pixels ? first + L.len : L.pixels};
}

// Pixel p of an [N][h][w] image batch as (n, row, column).
struct Pixel {
  int n, y, x;
};
__device__ __forceinline__ Pixel pixel_of(int64_t p, int h, int w) {
  const unsigned q = unsigned(p), r = q / unsigned(w);  // p < 2^31 (depthwise_nhwc_bf16_fits)
  return {int(r / unsigned(h)), int(r % unsigned(h)), int(q % unsigned(w))};
}

// w_s[t · width + j] = bf16(w[c0 + j][t]) for the slice's channels c0 + j (0 past C), width =
// tg · V: the filter of the slice, tap-major. Ends with a __syncthreads.
__device__ void stage_filter(const Layout& L, int v, const float* __restrict__ w, float* w_s) {
  const int width = L.tg * v, c0 = int(blockIdx.x) * width;
  for (int i = int(threadIdx.x); i < L.taps * width; i += kThreads) {
    const int j = i / L.taps, t = i - j * L.taps;  // i walks w in memory order
    w_s[t * width + j] = c0 + j < L.C ? bf_to_f(f_to_bf(w[int64_t(c0) * L.taps + i])) : 0.f;
  }
  __syncthreads();
}

// y[n,oh,ow,c] = bf16( Σ_{kh,kw} x[n, oh·s − p + kh, ow·s − p + kw, c] · w[c,kh,kw] ), the taps
// inside the image in (kh, kw) order; with a bias, y = bf16(y + bias[c]).
template <int V, int K>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(Layout L, const uint16_t* __restrict__ x, const float* __restrict__ w,
                   const float* __restrict__ bias, uint16_t* __restrict__ y) {
  extern __shared__ float w_s[];
  stage_filter(L, V, w, w_s);
  const Place me = place_of(L, V);
  if (!me.active) return;
  const int KH = K ? K : L.KH, KW = K ? K : L.KW, width = L.tg * V;
  const float* w_me = w_s + me.g * V;
  const Walk walk = walk_of(L, me.lane);
  for (int64_t p = walk.begin; p < walk.end; p += L.rl) {
    const Pixel o = pixel_of(p, L.OH, L.OW);
    const int ih0 = o.y * L.stride - L.pad, iw0 = o.x * L.stride - L.pad;
    const uint16_t* x_n = x + int64_t(o.n) * L.H * L.W * L.C + me.c;
    float acc[V] = {};
#pragma unroll
    for (int kh = 0; kh < KH; ++kh) {
      const int ih = ih0 + kh;
      if (unsigned(ih) >= unsigned(L.H)) continue;
#pragma unroll
      for (int kw = 0; kw < KW; ++kw) {
        const int iw = iw0 + kw;
        if (unsigned(iw) >= unsigned(L.W)) continue;
        float xv[V];
        load_bf16<V>(x_n + (int64_t(ih) * L.W + iw) * L.C, xv);
        const float* wt = w_me + (kh * KW + kw) * width;
#pragma unroll
        for (int v = 0; v < V; ++v) acc[v] = fmaf(xv[v], wt[v], acc[v]);  // the product is exact
      }
    }
    if (bias) {
#pragma unroll
      for (int v = 0; v < V; ++v) acc[v] = bf_to_f(f_to_bf(acc[v])) + bias[me.c + v];
    }
    store_bf16<V>(y + p * L.C + me.c, acc);
  }
}

// dx[n,ih,iw,c] = bf16( Σ dy[n,oh,ow,c] · w[c,kh,kw] ) over the taps (kh, kw), in that order,
// with oh = (ih + p − kh) / s and ow = (iw + p − kw) / s whole numbers inside [0, OH) x [0, OW).
template <int V, int K>
__global__ void __launch_bounds__(kThreads)
    backward_data_kernel(Layout L, const uint16_t* __restrict__ dy, const float* __restrict__ w,
                         uint16_t* __restrict__ dx) {
  extern __shared__ float w_s[];
  stage_filter(L, V, w, w_s);
  const Place me = place_of(L, V);
  if (!me.active) return;
  const int KH = K ? K : L.KH, KW = K ? K : L.KW, width = L.tg * V, s = L.stride;
  const float* w_me = w_s + me.g * V;
  const Walk walk = walk_of(L, me.lane);
  for (int64_t p = walk.begin; p < walk.end; p += L.rl) {
    const Pixel i = pixel_of(p, L.H, L.W);
    const uint16_t* dy_n = dy + int64_t(i.n) * L.OH * L.OW * L.C + me.c;
    float acc[V] = {};
#pragma unroll
    for (int kh = 0; kh < KH; ++kh) {
      const int th = i.y + L.pad - kh;  // = oh·s
      if (th < 0) break;                // and for every later kh
      const int oh = th / s;
      if (oh * s != th || oh >= L.OH) continue;
#pragma unroll
      for (int kw = 0; kw < KW; ++kw) {
        const int tw = i.x + L.pad - kw;  // = ow·s
        if (tw < 0) break;
        const int ow = tw / s;
        if (ow * s != tw || ow >= L.OW) continue;
        float g[V];
        load_bf16<V>(dy_n + (int64_t(oh) * L.OW + ow) * L.C, g);
        const float* wt = w_me + (kh * KW + kw) * width;
#pragma unroll
        for (int v = 0; v < V; ++v) acc[v] = fmaf(g[v], wt[v], acc[v]);
      }
    }
    store_bf16<V>(dx + p * L.C + me.c, acc);
  }
}

// partial[chunk][t0 + t][c] = Σ over the chunk's output pixels (n, oh, ow) of
// dy[n,oh,ow,c] · x[n, oh·s − p + kh, ow·s − p + kw, c], tap t0 + t = kh·KW + kw, for the taps
// t < nt <= kTapSlice of this launch. Each lane sums its pixels in order, then the block its
// lanes in lane order.
template <int V>
__global__ void __launch_bounds__(kThreads)
    weight_partial_kernel(Layout L, const uint16_t* __restrict__ dy, const uint16_t* __restrict__ x, int t0,
                          int nt, float* __restrict__ partial) {
  extern __shared__ float lanes[];  // [rl][tg · V]: the lanes' sums of one tap
  const Place me = place_of(L, V);
  int off_h[kTapSlice], off_w[kTapSlice];  // tap t reads x at (oh·s + off_h[t], ow·s + off_w[t])
#pragma unroll
  for (int t = 0; t < kTapSlice; ++t) {
    const int tap = t0 + t;
    off_h[t] = tap / L.KW - L.pad;
    off_w[t] = tap % L.KW - L.pad;
  }
  float acc[kTapSlice][V] = {};
  if (me.active) {
    const Walk walk = walk_of(L, me.lane);
    for (int64_t p = walk.begin; p < walk.end; p += L.rl) {
      const Pixel o = pixel_of(p, L.OH, L.OW);
      float g[V];
      load_bf16<V>(dy + p * L.C + me.c, g);
      const int ih0 = o.y * L.stride, iw0 = o.x * L.stride;
      const uint16_t* x_n = x + int64_t(o.n) * L.H * L.W * L.C + me.c;
#pragma unroll
      for (int t = 0; t < kTapSlice; ++t) {
        const int ih = ih0 + off_h[t], iw = iw0 + off_w[t];
        if (t >= nt || unsigned(ih) >= unsigned(L.H) || unsigned(iw) >= unsigned(L.W)) continue;
        float xv[V];
        load_bf16<V>(x_n + (int64_t(ih) * L.W + iw) * L.C, xv);
#pragma unroll
        for (int v = 0; v < V; ++v) acc[t][v] = fmaf(g[v], xv[v], acc[t][v]);
      }
    }
  }
  // The block's lanes, one tap at a time (nt is the same in every thread: all reach the syncs).
  const int width = L.tg * V, c0 = int(blockIdx.x) * width;
#pragma unroll
  for (int t = 0; t < kTapSlice; ++t) {
    if (t >= nt) break;
    if (me.lane < L.rl) {
#pragma unroll
      for (int v = 0; v < V; ++v) lanes[me.lane * width + me.g * V + v] = acc[t][v];
    }
    __syncthreads();
    for (int j = int(threadIdx.x); j < width; j += kThreads) {
      if (c0 + j >= L.C) continue;
      float sum = 0.f;
      for (int l = 0; l < L.rl; ++l) sum += lanes[l * width + j];
      partial[(int64_t(blockIdx.y) * L.taps + t0 + t) * L.C + c0 + j] = sum;
    }
    __syncthreads();
  }
}

// dw[c][t] = Σ_{k < chunks} partial[k][t][c], in a fixed order: lane l of the block's kSumLanes
// adds k = l, l + kSumLanes, ... in order, then the lanes are added in lane order.
__global__ void __launch_bounds__(kThreads)
    sum_partials_kernel(const float* __restrict__ partial, int chunks, int taps, int C, float* __restrict__ dw) {
  __shared__ float lanes[kSumLanes][kSumChannels];
  const int cx = int(threadIdx.x) % kSumChannels, lane = int(threadIdx.x) / kSumChannels;
  const int c = int(blockIdx.x) * kSumChannels + cx, t = int(blockIdx.y);
  float sum = 0.f;
  if (c < C) {
#pragma unroll 8
    for (int k = lane; k < chunks; k += kSumLanes) sum += partial[(int64_t(k) * taps + t) * C + c];
  }
  lanes[lane][cx] = sum;
  __syncthreads();
  if (lane != 0 || c >= C) return;
  float total = 0.f;
  for (int l = 0; l < kSumLanes; ++l) total += lanes[l][cx];
  dw[int64_t(c) * taps + t] = total;
}

void require_fits(const char* op, const Conv2dGeometry& g) {
  MDQ_CHECK(depthwise_nhwc_bf16_fits(g),
            op << ": takes depthwise convolutions (groups == C == O) of at most " << kDepthwiseMaxTaps
               << " taps and fewer than 2^31 pixels; got C " << g.C << ", O " << g.O << ", groups " << g.groups
               << ", a " << g.KH << "x" << g.KW << " filter, N " << g.N << ", " << g.H << "x" << g.W << " input");
}

}  // namespace

bool depthwise_nhwc_bf16_fits(const Conv2dGeometry& g) {
  constexpr int64_t kMaxPixels = INT32_MAX;
  return g.groups == g.C && g.O == g.C && g.KH * g.KW <= kDepthwiseMaxTaps && g.N * g.H * g.W <= kMaxPixels &&
         g.N * g.OH * g.OW <= kMaxPixels && g.C <= kMaxPixels;
}

void depthwise_forward_nhwc_bf16(const Conv2dGeometry& g, const uint16_t* x, const float* w, const float* bias,
                                 uint16_t* y) {
  require_fits("depthwise_forward_nhwc_bf16", g);
  const int64_t pixels = g.N * g.OH * g.OW;
  if (pixels == 0) return;
  const int v = vector_width(g, {x, y});
  const Layout L = make_layout(g, v, pixels, false);
  with_shape(v, g.KH == 3 && g.KW == 3, [&](auto vv, auto kk) {
    constexpr int V = decltype(vv)::value, K = decltype(kk)::value;
    const size_t smem = size_t(L.taps) * L.tg * V * sizeof(float);
    forward_kernel<V, K><<<dim3(L.slices, L.chunks), kThreads, smem, cuda::stream()>>>(L, x, w, bias, y);
    CUDA_CHECK_LAUNCH();
  });
}

void depthwise_backward_nhwc_bf16(const Conv2dGeometry& g, const uint16_t* dy, const uint16_t* x, const float* w,
                                  uint16_t* dx, float* dw) {
  require_fits("depthwise_backward_nhwc_bf16", g);
  if (dx && g.N * g.H * g.W > 0) {
    const int v = vector_width(g, {dy, dx});
    const Layout L = make_layout(g, v, g.N * g.H * g.W, false);
    with_shape(v, g.KH == 3 && g.KW == 3, [&](auto vv, auto kk) {
      constexpr int V = decltype(vv)::value, K = decltype(kk)::value;
      const size_t smem = size_t(L.taps) * L.tg * V * sizeof(float);
      backward_data_kernel<V, K><<<dim3(L.slices, L.chunks), kThreads, smem, cuda::stream()>>>(L, dy, w, dx);
      CUDA_CHECK_LAUNCH();
    });
  }
  if (!dw) return;
  // With no pixels the one chunk's partials are 0, and so is dw.
  const int v = vector_width(g, {dy, x});
  const Layout L = make_layout(g, v, g.N * g.OH * g.OW, true);
  DeviceScratch<float> partial(int64_t(L.chunks) * L.taps * L.C);
  const size_t smem = size_t(L.rl) * L.tg * v * sizeof(float);
  for (int t0 = 0; t0 < L.taps; t0 += kTapSlice) {
    const int nt = std::min(kTapSlice, L.taps - t0);
    const dim3 grid(L.slices, L.chunks);
    if (v == 8)
      weight_partial_kernel<8><<<grid, kThreads, smem, cuda::stream()>>>(L, dy, x, t0, nt, partial.get());
    else
      weight_partial_kernel<1><<<grid, kThreads, smem, cuda::stream()>>>(L, dy, x, t0, nt, partial.get());
    CUDA_CHECK_LAUNCH();
  }
  sum_partials_kernel<<<dim3(unsigned(ceil_div(L.C, kSumChannels)), L.taps), kThreads, 0, cuda::stream()>>>(
      partial.get(), L.chunks, L.taps, L.C, dw);
  CUDA_CHECK_LAUNCH();
}

}  // namespace mdq::kernels

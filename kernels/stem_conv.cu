// The direct stem convolution (kernels/stem_conv.h): f32 FMAs on CUDA cores, the images read as
// they are (f32 NCHW), the folded BN + ReLU applied to the f32 sums, NHWC bf16 or f32 written.
//
// Persistent CTAs of 256 threads, grid = min(tiles, SMs x resident CTAs), each walking the tiles
// tile, tile + grid, ...; a tile is 16 x 16 output pixels of one image. A CTA loads the weights
// (rearranged to [KH][KW][C][O], so one tap's filters are contiguous) and the scale and shift
// into shared memory once. The tile's input patch, ((16 - 1) stride + KH) x ((16 - 1) stride +
// KW) pixels x C channels of the NCHW image, arrives by 4-byte cp.async (the patch starts at any
// column, so no wider copy is aligned) with out-of-image taps zero-filled, double-buffered: the
// next tile's patch is in flight while the current one is computed.
//
// Thread mapping: thread t owns filter group fg = t & 3 and pixel group pg = t >> 2, i.e. output
// column pg & 15, rows 4 (pg >> 4) .. +3, and filters 16 j + 4 fg + {0..3} for j < O / 16: 4
// pixels x O/4 filters, 64 f32 sums for O = 64. Per tap and channel a thread reads 4 inputs and
// O/16 float4 weights and does O FMAs. A warp's lanes read 8 consecutive output columns of one
// row (distinct banks at stride 1 and 2; the 4 filter groups of a pixel share the address) and 4
// float4 weight chunks 16 bytes apart (distinct banks; the 8 pixel groups share them). The patch
// rows and columns have a fixed pitch, 15 stride + 7 (the largest window), so every offset but
// the tap's is a compile-time immediate. The sum order is kernels/stem_conv.h's: taps in row
// order, channels inside, one fmaf each, so the CPU reference matches bit for bit.
//
// The signs form (Out = uint32_t): a pixel's filters are spread over the 4 lanes of a quad (fg =
// lane & 3), lane fg holding filters 16 j + 4 fg + {0..3}, i.e. 8 bits of word j / 2 at bit
// 16 (j & 1) + 4 fg + k. Each lane sets its bits of a word in place and two xor shuffles OR
// the quad's four parts, so every lane of the quad holds its 4 pixels' O/32 words; lane fg then
// stores pixel fg's (one u32 for O = 32, a uint2 for 64): 4 pixels x O/32 words x 2 shuffles
// per lane and tile against its O x C KH KW FMAs, and nothing kept past its word (no more
// registers than the f32 forms').
#include <type_traits>

#include "common/error.h"
#include "kernels/backend.h"
#include "kernels/bf16.cuh"
#include "kernels/cuda_common.h"
#include "kernels/persistent_grid.cuh"
#include "kernels/ptx.cuh"
#include "kernels/stem_conv.h"
#include "kernels/stem_launch.cuh"

namespace mdq::kernels {
namespace stem {
namespace {

constexpr int kTile = 16, kThreads = 256, kPixelsPerThread = 4;
static_assert(kThreads == 4 * (kTile * kTile / kPixelsPerThread), "4 filter groups x 64 pixel groups");

template <int C, int O, int S>
struct Config {
  static constexpr int PITCH = (kTile - 1) * S + kStemMaxWindow;  // patch rows and columns
  static constexpr int PLANE = PITCH * PITCH;
  static constexpr int PATCH = C * PLANE;  // floats per buffer
  static constexpr int CHUNKS = O / 16;    // float4 filter chunks per thread
  static_assert(O % 16 == 0, "filters come in chunks of 16 (4 groups x float4)");
  // Shared floats for a window of T taps: weights, scale, shift, two patch buffers (T C O and O
  // are multiples of 16 floats, so every part stays 16-byte aligned).
  static constexpr int floats(int T) { return T * C * O + 2 * O + 2 * PATCH; }
};

// The output types: f32 and bf16 (uint16_t) values, or uint32_t words of packed signs.
template <class Out>
constexpr bool kSigns = std::is_same_v<Out, uint32_t>;

struct Geometry {
  int OH, OW, tiles_w, tiles_per_image, tiles;
};

template <class Out>
__device__ __forceinline__ void store4(Out* p, float a, float b, float c, float d) {
  if constexpr (sizeof(Out) == 4) *reinterpret_cast<float4*>(p) = make_float4(a, b, c, d);
  else *reinterpret_cast<uint2*>(p) = make_uint2(pack2(a, b), pack2(c, d));
}

// The patch of `tile` into buf: rows r < (16 - 1) S + KH and columns < (16 - 1) S + KW of each
// channel, zeros where they fall outside the image; the rest of the pitch is never read.
template <int C, int O, int S>
__device__ __forceinline__ void load_patch(const StemConvArgs& a, const Geometry& g, int tile, float* buf) {
  using Cfg = Config<C, O, S>;
  const int n = tile / g.tiles_per_image, t = tile - n * g.tiles_per_image;
  const int th = t / g.tiles_w, tw = t - th * g.tiles_w;
  const int ih0 = th * kTile * S - a.pad, iw0 = tw * kTile * S - a.pad;
  const int rows = (kTile - 1) * S + a.KH, cols = (kTile - 1) * S + a.KW;
  const float* image = a.x + int64_t(n) * C * a.H * a.W;
  for (int e = threadIdx.x; e < Cfg::PATCH; e += kThreads) {
    const int c = e / Cfg::PLANE, rc = e - c * Cfg::PLANE, r = rc / Cfg::PITCH, col = rc - r * Cfg::PITCH;
    if (r >= rows || col >= cols) continue;
    const int ih = ih0 + r, iw = iw0 + col;
    const bool inside = ih >= 0 && ih < a.H && iw >= 0 && iw < a.W;
    const float* src = inside ? image + (int64_t(c) * a.H + ih) * a.W + iw : a.x;
    ptx::cp_async4_zfill(buf + e, src, inside);
  }
}

// The signs form's epilogue (see the top): acc[i][4 j + k] is filter 16 j + 4 fg + k of pixel
// (oh0 + i, ow); the whole warp runs it (the shuffles take every lane), pixels outside the map
// included, and only the stores are skipped for those.
template <int O>
__device__ __forceinline__ void signs_epilogue(const StemConvArgs& a, const Geometry& g,
                                               const float (&acc)[kPixelsPerThread][O / 4], const float* ss,
                                               const float* hs, int fg, int n, int oh0, int ow, uint32_t* bits) {
  static_assert(O % 32 == 0, "the signs form packs whole words of 32 filters");
  constexpr int WORDS = O / 32;
  uint32_t mine[WORDS] = {};  // pixel fg's words, the ones this lane stores
#pragma unroll
  for (int i = 0; i < kPixelsPerThread; ++i) {
#pragma unroll
    for (int w = 0; w < WORDS; ++w) {
      uint32_t word = 0u;
#pragma unroll
      for (int h = 0; h < 2; ++h) {  // chunk j = 2 w + h: bits 16 h + 4 fg + k
        const int o = 16 * (2 * w + h) + 4 * fg;
        const float4 sc = *reinterpret_cast<const float4*>(ss + o), sh = *reinterpret_cast<const float4*>(hs + o);
        const float* d = &acc[i][4 * (2 * w + h)];
        const uint32_t nibble = uint32_t(stem_sign(d[0], sc.x, sh.x, a.relu)) |
                                uint32_t(stem_sign(d[1], sc.y, sh.y, a.relu)) << 1 |
                                uint32_t(stem_sign(d[2], sc.z, sh.z, a.relu)) << 2 |
                                uint32_t(stem_sign(d[3], sc.w, sh.w, a.relu)) << 3;
        word |= nibble << (16 * h + 4 * fg);
      }
      word |= __shfl_xor_sync(0xffffffffu, word, 1);  // the quad's four disjoint parts
      word |= __shfl_xor_sync(0xffffffffu, word, 2);
      if (i == fg) mine[w] = word;
    }
  }
  const int oh = oh0 + fg;
  if (oh >= g.OH || ow >= g.OW) return;
  uint32_t* p = bits + ((int64_t(n) * g.OH + oh) * g.OW + ow) * WORDS;
  if constexpr (WORDS == 2) *reinterpret_cast<uint2*>(p) = make_uint2(mine[0], mine[1]);
  else *p = mine[0];
}

template <class Out, int C, int O, int S>
__global__ void __launch_bounds__(kThreads, 2) stem_conv_kernel(StemConvArgs a, Geometry g, Out* y) {
  using Cfg = Config<C, O, S>;
  constexpr int PITCH = Cfg::PITCH, PLANE = Cfg::PLANE, CHUNKS = Cfg::CHUNKS;
  extern __shared__ __align__(16) float smem[];
  const int T = a.KH * a.KW;
  float* ws = smem;             // [T][C][O]
  float* ss = ws + T * C * O;   // scale [O]
  float* hs = ss + O;           // shift [O]
  float* patches = hs + O;      // two buffers of Cfg::PATCH

  const int tid = threadIdx.x;
  // The weights [O][C][KH][KW] -> [T][C][O] and the affine, once per CTA (read by every tile).
  for (int e = tid; e < T * C * O; e += kThreads) {
    const int o = e / (T * C), ct = e - o * (T * C), c = ct / T, tap = ct - c * T;
    ws[(tap * C + c) * O + o] = a.w[e];
  }
  for (int o = tid; o < O; o += kThreads) {
    ss[o] = a.scale ? a.scale[o] : 1.f;
    hs[o] = a.shift ? a.shift[o] : 0.f;
  }

  const int fg = tid & 3, pg = tid >> 2, px = pg & (kTile - 1), py0 = (pg >> 4) * kPixelsPerThread;
  int tile = blockIdx.x, buf = 0;
  if (tile < g.tiles) load_patch<C, O, S>(a, g, tile, patches);
  ptx::cp_async_commit();
  for (; tile < g.tiles; tile += gridDim.x) {
    const int next = tile + gridDim.x;
    if (next < g.tiles) load_patch<C, O, S>(a, g, next, patches + (buf ^ 1) * Cfg::PATCH);
    ptx::cp_async_commit();
    ptx::cp_async_wait<1>();  // this thread's copies of `tile` have landed (the next may still fly)
    __syncthreads();          // ... and everyone's; on the first tile also the weights' stores

    float acc[kPixelsPerThread][4 * CHUNKS];
#pragma unroll
    for (int i = 0; i < kPixelsPerThread; ++i)
#pragma unroll
      for (int f = 0; f < 4 * CHUNKS; ++f) acc[i][f] = 0.f;
    const float* xp = patches + buf * Cfg::PATCH + py0 * S * PITCH + px * S;
    const float* wp = ws + 4 * fg;
    for (int kh = 0; kh < a.KH; ++kh)
      for (int kw = 0; kw < a.KW; ++kw) {
        const float* xt = xp + kh * PITCH + kw;
        const float* wt = wp + (kh * a.KW + kw) * C * O;
#pragma unroll
        for (int c = 0; c < C; ++c) {
          float xv[kPixelsPerThread];
#pragma unroll
          for (int i = 0; i < kPixelsPerThread; ++i) xv[i] = xt[c * PLANE + i * S * PITCH];
#pragma unroll
          for (int j = 0; j < CHUNKS; ++j) {
            const float4 w4 = *reinterpret_cast<const float4*>(wt + c * O + 16 * j);
#pragma unroll
            for (int i = 0; i < kPixelsPerThread; ++i) {
              acc[i][4 * j + 0] = fmaf(xv[i], w4.x, acc[i][4 * j + 0]);
              acc[i][4 * j + 1] = fmaf(xv[i], w4.y, acc[i][4 * j + 1]);
              acc[i][4 * j + 2] = fmaf(xv[i], w4.z, acc[i][4 * j + 2]);
              acc[i][4 * j + 3] = fmaf(xv[i], w4.w, acc[i][4 * j + 3]);
            }
          }
        }
      }

    const int n = tile / g.tiles_per_image, t = tile - n * g.tiles_per_image;
    const int th = t / g.tiles_w, tw = t - th * g.tiles_w;
    const int ow = tw * kTile + px;
    if constexpr (kSigns<Out>) {
      signs_epilogue<O>(a, g, acc, ss, hs, fg, n, th * kTile + py0, ow, y);
    } else {
#pragma unroll
      for (int i = 0; i < kPixelsPerThread; ++i) {
        const int oh = th * kTile + py0 + i;
        if (oh >= g.OH || ow >= g.OW) continue;
        Out* yp = y + ((int64_t(n) * g.OH + oh) * g.OW + ow) * O + 4 * fg;
#pragma unroll
        for (int j = 0; j < CHUNKS; ++j) {
          const int o = 16 * j + 4 * fg;
          const float4 sc = *reinterpret_cast<const float4*>(ss + o), sh = *reinterpret_cast<const float4*>(hs + o);
          store4(yp + 16 * j, stem_affine_act(acc[i][4 * j + 0], sc.x, sh.x, a.relu),
                 stem_affine_act(acc[i][4 * j + 1], sc.y, sh.y, a.relu),
                 stem_affine_act(acc[i][4 * j + 2], sc.z, sh.z, a.relu),
                 stem_affine_act(acc[i][4 * j + 3], sc.w, sh.w, a.relu));
        }
      }
    }
    __syncthreads();  // every thread is done with this buffer before the next iteration refills it
    buf ^= 1;
  }
}

template <class Out, int C, int O, int S>
void launch(const StemConvArgs& a, const Geometry& g, Out* y) {
  using Cfg = Config<C, O, S>;
  auto kernel = stem_conv_kernel<Out, C, O, S>;
  constexpr int kMaxBytes = Cfg::floats(kStemMaxWindow * kStemMaxWindow) * int(sizeof(float));
  // The largest window's shared memory opted in and the grid sized for it: every launch of this
  // instantiation then fits, and a smaller window only leaves room unused.
  const dim3 grid = persistent_grid(kernel, kThreads, kMaxBytes, g.tiles, 1);
  const int bytes = Cfg::floats(a.KH * a.KW) * int(sizeof(float));
  kernel<<<grid, kThreads, bytes, cuda::stream()>>>(a, g, y);
  CUDA_CHECK_LAUNCH();
}

template <class Out>
void run(const StemConvArgs& a, Out* y) {
  stem_check_fits<kSigns<Out>>(a, kSigns<Out> ? "stem_conv_signs: the direct kernel"
                                             : "stem_conv_nhwc: the direct kernel");
  Geometry g{};
  g.OH = ops::window_output_size(a.H, a.KH, a.stride, a.pad);
  g.OW = ops::window_output_size(a.W, a.KW, a.stride, a.pad);
  if (a.N <= 0 || g.OH <= 0 || g.OW <= 0) return;
  g.tiles_w = (g.OW + kTile - 1) / kTile;
  g.tiles_per_image = g.tiles_w * ((g.OH + kTile - 1) / kTile);
  g.tiles = a.N * g.tiles_per_image;
  stem_dispatch<kSigns<Out>>(a, [&](auto c, auto o, auto s) {
    launch<Out, decltype(c)::value, decltype(o)::value, decltype(s)::value>(a, g, y);
  });
}

}  // namespace
}  // namespace stem

void stem_conv_nhwc_bf16(const StemConvArgs& a, uint16_t* y) { stem::run(a, y); }
void stem_conv_nhwc_f32(const StemConvArgs& a, float* y) { stem::run(a, y); }
void stem_conv_signs(const StemConvArgs& a, uint32_t* bits) { stem::run(a, bits); }

void register_stem_conv(CudaBackend& b) {
  b.stem_conv_nhwc_bf16 = stem_conv_nhwc_bf16;
  b.stem_conv_nhwc_f32 = stem_conv_nhwc_f32;
  b.stem_conv_signs = stem_conv_signs;
}

}  // namespace mdq::kernels

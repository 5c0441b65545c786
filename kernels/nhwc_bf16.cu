// NHWC inference helpers (kernels/nhwc_bf16.h): grid-stride loops that handle V consecutive
// channels per thread with one 16-byte access (bf16 x 8 or f32 x 4) when the channel count and
// the pointers allow it, else one element per thread. These passes are pure memory traffic, so
// wide accesses are what makes them cheap beside the convolutions. Each pass is one template
// over the element type (uint16_t = bf16 bits, float), explicitly instantiated for both at the
// end. Arithmetic is spelled out (__fmaf_rn, IEEE division) so the results equal the CPU
// references exactly.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>

#include "common/error.h"
#include "kernels/backend.h"
#include "kernels/bf16.cuh"
#include "kernels/cuda_common.h"
#include "kernels/grid_stride.cuh"
#include "kernels/nhwc_bf16.h"

namespace mdq::kernels {
namespace {

template <class T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};
// Elements per 16-byte access.
template <class T>
constexpr int kWide = 16 / static_cast<int>(sizeof(T));

__device__ __forceinline__ float to_f(uint16_t v) { return bf_to_f(v); }
__device__ __forceinline__ float to_f(float v) { return v; }
template <class T>
__device__ __forceinline__ T from_f(float v);
template <>
__device__ __forceinline__ uint16_t from_f<uint16_t>(float v) { return f_to_bf(v); }
template <>
__device__ __forceinline__ float from_f<float>(float v) { return v; }

template <class T, int V>
__device__ __forceinline__ Vec<T, V> load(const T* p) {
  return *reinterpret_cast<const Vec<T, V>*>(p);
}
template <class T, int V>
__device__ __forceinline__ void store(T* p, const Vec<T, V>& v) {
  *reinterpret_cast<Vec<T, V>*>(p) = v;
}

// groups = P*C / V; requires C % V == 0 so a group's V channels sit in one pixel.
template <class T, int V>
__global__ void affine_act_kernel(const T* x, const float* scale, const float* shift, const T* r, bool relu, T* y,
                                  int64_t groups, int C) {
  MDQ_GRID_STRIDE(g, groups) {
    const int64_t i0 = g * V;
    const int c0 = static_cast<int>(i0 % C);
    const Vec<T, V> xv = load<T, V>(x + i0);
    Vec<T, V> rv{};
    if (r) rv = load<T, V>(r + i0);
    Vec<T, V> out;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      float v = __fmaf_rn(to_f(xv.v[j]), scale ? __ldg(scale + c0 + j) : 1.f, shift ? __ldg(shift + c0 + j) : 0.f);
      if (r) v = __fadd_rn(v, to_f(rv.v[j]));
      if (relu) v = fmaxf(v, 0.f);
      out.v[j] = from_f<T>(v);
    }
    store<T, V>(y + i0, out);
  }
}

template <int V>
__global__ void residual_add_kernel(const float* x, const float* r32, const uint16_t* r16, float* y, int64_t groups) {
  MDQ_GRID_STRIDE(g, groups) {
    const int64_t i0 = g * V;
    const Vec<float, V> xv = load<float, V>(x + i0);
    Vec<float, V> out;
    if (r32) {
      const Vec<float, V> rv = load<float, V>(r32 + i0);
#pragma unroll
      for (int j = 0; j < V; ++j) out.v[j] = __fadd_rn(xv.v[j], rv.v[j]);
    } else {
      const Vec<uint16_t, V> rv = load<uint16_t, V>(r16 + i0);
#pragma unroll
      for (int j = 0; j < V; ++j) out.v[j] = __fadd_rn(xv.v[j], bf_to_f(rv.v[j]));
    }
    store<float, V>(y + i0, out);
  }
}

// Max pooling, V consecutive channels per thread.
template <class T, int V>
__global__ void maxpool_kernel(const T* x, T* y, int N, int H, int W, int C, int k, int s, int p, int OH, int OW) {
  const int CG = C / V;
  MDQ_GRID_STRIDE(g, int64_t(N) * OH * OW * CG) {
    const int cg = static_cast<int>(g % CG);
    const int64_t pix = g / CG;
    const int ow = static_cast<int>(pix % OW), oh = static_cast<int>((pix / OW) % OH);
    const int64_t n = pix / OW / OH;
    float m[V];
#pragma unroll
    for (int j = 0; j < V; ++j) m[j] = -INFINITY;
    for (int kh = 0; kh < k; ++kh) {
      const int ih = oh * s - p + kh;
      if (ih < 0 || ih >= H) continue;
      for (int kw = 0; kw < k; ++kw) {
        const int iw = ow * s - p + kw;
        if (iw < 0 || iw >= W) continue;
        const Vec<T, V> v = load<T, V>(x + ((n * H + ih) * W + iw) * C + int64_t(cg) * V);
#pragma unroll
        for (int j = 0; j < V; ++j) m[j] = fmaxf(m[j], to_f(v.v[j]));
      }
    }
    Vec<T, V> out;
#pragma unroll
    for (int j = 0; j < V; ++j) out.v[j] = from_f<T>(m[j]);
    store<T, V>(y + pix * C + int64_t(cg) * V, out);
  }
}

// Layout changes: x viewed as B matrices [R][S] -> y as B matrices [S][R], each element
// converted In -> float -> Out (one bf16 rounding at most). A 64x64 tile goes through shared
// memory so that both the reads (along S) and the writes (along R) are coalesced, and each
// thread moves two neighbours at once (one 4- or 8-byte access) when the row length and the
// pointer allow, so a warp's access is a whole 128-byte line even for bf16. These passes
// surround every bf16 convolution of a training step (kernels/conv2d.cu).
constexpr int kTile = 64, kTileRows = 8;  // blocks of 32 x kTileRows threads

// Add: y += the converted element instead of y = (Out float only: a gradient summed into the
// one already there, so the sum costs no pass of its own).
template <class In, class Out, bool Add = false>
__global__ void __launch_bounds__(32 * kTileRows)
    transpose_kernel(const In* x, Out* y, int64_t B, int64_t R, int64_t S, bool pairs_in, bool pairs_out) {
  __shared__ float tile[kTile][kTile + 1];  // +1: the column reads spread over the banks
  const int t2 = 2 * threadIdx.x, ty = threadIdx.y;
  for (int64_t b = blockIdx.z; b < B; b += gridDim.z)
    for (int64_t r0 = int64_t(blockIdx.y) * kTile; r0 < R; r0 += int64_t(gridDim.y) * kTile)
      for (int64_t s0 = int64_t(blockIdx.x) * kTile; s0 < S; s0 += int64_t(gridDim.x) * kTile) {
        const In* xb = x + b * R * S;
        Out* yb = y + b * R * S;
        for (int j = ty; j < kTile; j += kTileRows) {  // row r0 + j, columns s0 + t2, s0 + t2 + 1
          const int64_t r = r0 + j, s = s0 + t2;
          if (r >= R || s >= S) continue;
          if (pairs_in) {  // S even: s + 1 < S too
            const Vec<In, 2> v = load<In, 2>(xb + r * S + s);
            tile[j][t2] = to_f(v.v[0]);
            tile[j][t2 + 1] = to_f(v.v[1]);
          } else {
            tile[j][t2] = to_f(xb[r * S + s]);
            if (s + 1 < S) tile[j][t2 + 1] = to_f(xb[r * S + s + 1]);
          }
        }
        __syncthreads();
        for (int j = ty; j < kTile; j += kTileRows) {  // output row s0 + j, columns r0 + t2, r0 + t2 + 1
          const int64_t s = s0 + j, r = r0 + t2;
          if (s >= S || r >= R) continue;
          if (pairs_out) {  // R even: r + 1 < R too
            Vec<Out, 2> v;
            if constexpr (Add) {
              v = load<Out, 2>(yb + s * R + r);
              v.v[0] += tile[t2][j];
              v.v[1] += tile[t2 + 1][j];
            } else {
              v.v[0] = from_f<Out>(tile[t2][j]);
              v.v[1] = from_f<Out>(tile[t2 + 1][j]);
            }
            store<Out, 2>(yb + s * R + r, v);
          } else if constexpr (Add) {
            yb[s * R + r] += tile[t2][j];
            if (r + 1 < R) yb[s * R + r + 1] += tile[t2 + 1][j];
          } else {
            yb[s * R + r] = from_f<Out>(tile[t2][j]);
            if (r + 1 < R) yb[s * R + r + 1] = from_f<Out>(tile[t2 + 1][j]);
          }
        }
        __syncthreads();  // the next iteration rewrites the tile
      }
}

// The same layout change for a matrix with a short side (R or S at most kShortSide: a conv
// weight [O][Cg][KH*KW] has S = 9 or 1, its gradient [O][KH*KW][Cg] R = 9 or 1, an image
// [N][3][HW] R = 3), where a 64x64 tile would be mostly empty. A block moves a panel of up to
// kPanel elements of the long side, with all K of the short side, through shared memory, so that
// both ends are runs of contiguous elements: with S short the panel's input x[r0, r0 + T)[0, S)
// is one run of T*S elements and its output is S runs y[s][r0, r0 + T); with R short, the
// mirror image. (One thread per long-side element walking the short side, the first version,
// ran the weight conversions at 5-8x their bandwidth time on an H200: its strided side's 4-byte
// accesses each touched a sector of their own.)
constexpr int64_t kShortSide = 16;
constexpr int kPanel = 128;  // long-side elements a block moves; also its thread count

template <class In, class Out, bool Add = false>
__global__ void __launch_bounds__(kPanel) transpose_short_kernel(const In* x, Out* y, int64_t B, int64_t R, int64_t S) {
  __shared__ float panel[kPanel * (kShortSide + 1)];
  const bool short_s = S <= R;
  const int64_t L = short_s ? R : S;
  const int K = static_cast<int>(short_s ? S : R);
  const int stride = K | 1;  // odd, so a warp reading panel[t * stride + k] over t hits 32 banks
  const int64_t panels = (L + kPanel - 1) / kPanel;
  for (int64_t p = blockIdx.x; p < B * panels; p += gridDim.x) {
    const int64_t b = p / panels, l0 = p % panels * kPanel;
    const int T = static_cast<int>(L - l0 < kPanel ? L - l0 : kPanel);
    const In* xb = x + b * R * S;
    Out* yb = y + b * R * S;
    // panel[t * stride + k] = element (long l0 + t, short k)
    for (int j = threadIdx.x; j < T * K; j += kPanel) {
      if (short_s) {  // x[l0 + t][k] for t, k in order: xb[l0 * S + j]
        panel[j / K * stride + j % K] = to_f(xb[l0 * S + j]);
      } else {  // x[k][l0 + t]: K runs of T
        const int k = j / T, t = j % T;
        panel[t * stride + k] = to_f(xb[k * S + l0 + t]);
      }
    }
    __syncthreads();
    for (int j = threadIdx.x; j < T * K; j += kPanel) {
      // S short: y[k][l0 + t], K runs of T; R short: y[l0 + t][k] for t, k in order.
      const int k = short_s ? j / T : j % K, t = short_s ? j % T : j / K;
      Out* out = short_s ? yb + k * R + l0 + t : yb + l0 * R + j;
      const float v = panel[t * stride + k];
      if constexpr (Add) {
        *out += v;
      } else {
        *out = from_f<Out>(v);
      }
    }
    __syncthreads();  // the next panel rewrites the shared memory
  }
}

// y[p][c] = c < cx ? x[p][c] : 0 for c < cy, p < P: one thread per element of y.
__global__ void copy_channels_kernel(const uint16_t* x, int cx, uint16_t* y, int cy, int64_t P) {
  MDQ_GRID_STRIDE(i, P * cy) {
    const int64_t p = i / cy;
    const int c = static_cast<int>(i % cy);
    y[i] = c < cx ? x[p * cx + c] : uint16_t{0};
  }
}

// The pixels a 1x1 convolution with stride s reads (kernels/conv2d.cu). Up = false: y [N][OH][OW][C]
// = x [N][H][W][C] at rows and columns 0, s, 2s, ... (one thread per V channels of y). Up = true,
// the adjoint: y [N][H][W][C] = x [N][OH][OW][C] at those pixels and 0 elsewhere (one thread per V
// channels of y, so every element is written once).
template <int V, bool Up>
__global__ void stride_pixels_kernel(const uint16_t* x, uint16_t* y, int64_t N, int H, int W, int C, int s, int OH,
                                     int OW) {
  const int groups = C / V;
  const int64_t pixels = N * (Up ? int64_t(H) * W : int64_t(OH) * OW);
  MDQ_GRID_STRIDE(i, pixels * groups) {
    const int64_t pix = i / groups;
    const int cg = static_cast<int>(i % groups);
    if constexpr (Up) {
      const int w = static_cast<int>(pix % W), h = static_cast<int>(pix / W % H);
      const int64_t n = pix / (int64_t(W) * H);
      Vec<uint16_t, V> v{};
      if (h % s == 0 && w % s == 0)
        v = load<uint16_t, V>(x + ((n * OH + h / s) * OW + w / s) * C + int64_t(cg) * V);
      store<uint16_t, V>(y + pix * C + int64_t(cg) * V, v);
    } else {
      const int ow = static_cast<int>(pix % OW), oh = static_cast<int>(pix / OW % OH);
      const int64_t n = pix / (int64_t(OW) * OH);
      const int64_t from = ((n * H + int64_t(oh) * s) * W + int64_t(ow) * s) * C + int64_t(cg) * V;
      store<uint16_t, V>(y + pix * C + int64_t(cg) * V, load<uint16_t, V>(x + from));
    }
  }
}

template <bool Up>
void stride_pixels(const uint16_t* x, uint16_t* y, int64_t N, int H, int W, int C, int s) {
  const int OH = (H + s - 1) / s, OW = (W + s - 1) / s;
  const int64_t n = N * (Up ? int64_t(H) * W : int64_t(OH) * OW) * C;
  if (n == 0) return;
  constexpr int V = kWide<uint16_t>;
  if (C % V == 0 && cuda::aligned16(x) && cuda::aligned16(y)) {
    stride_pixels_kernel<V, Up><<<cuda::grid_for(n / V), 256, 0, cuda::stream()>>>(x, y, N, H, W, C, s, OH, OW);
  } else {
    stride_pixels_kernel<1, Up><<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(x, y, N, H, W, C, s, OH, OW);
  }
  CUDA_CHECK_LAUNCH();
}

// cols [P][ld] = the convolution windows of x, column (c * KH + kh) * KW + kw of row (n, oh, ow)
// = x[n][oh*s - p + kh][ow*s - p + kw][c] or 0 (padding, or a column past C*KH*KW): one thread
// per V consecutive columns of a row, written with one 16-byte store when V = 8. The reads are
// scattered (a stem has 3 channels), but the windows of neighbouring threads overlap, so they
// come from L1/L2; the pass costs about one write of cols.
template <int V>
__global__ void im2col_kernel(const uint16_t* x, uint16_t* cols, int64_t N, int H, int W, int C, int KH, int KW, int s,
                              int p, int OH, int OW, int ld) {
  const int groups = ld / V, taps = KH * KW, K = C * taps;
  MDQ_GRID_STRIDE(i, N * OH * OW * groups) {
    const int64_t pix = i / groups;
    const int k0 = static_cast<int>(i % groups) * V;
    const int ow = static_cast<int>(pix % OW), oh = static_cast<int>(pix / OW % OH);
    const int64_t n = pix / (int64_t(OW) * OH);
    Vec<uint16_t, V> v;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const int k = k0 + j;
      uint16_t e = 0;
      if (k < K) {
        const int c = k / taps, t = k % taps;
        const int ih = oh * s - p + t / KW, iw = ow * s - p + t % KW;
        if (ih >= 0 && ih < H && iw >= 0 && iw < W) e = x[((n * H + ih) * W + iw) * C + c];
      }
      v.v[j] = e;
    }
    store<uint16_t, V>(cols + pix * ld + k0, v);
  }
}

// One thread per V consecutive output channels of one pixel (pix = n HW + q): neighbouring
// threads take neighbouring pixels, so each channel's reads are coalesced, and with V = 8 a
// thread writes its pixel's channels in one 16-byte store.
template <int V>
__global__ void nchw_to_nhwc_padded_kernel(const float* x, uint16_t* y, int64_t N, int C, int Cy, int64_t HW) {
  const int per_pixel = Cy / V;
  MDQ_GRID_STRIDE(g, N * HW * per_pixel) {
    const int64_t pix = g / per_pixel, n = pix / HW, q = pix % HW;
    const int c0 = static_cast<int>(g % per_pixel) * V;
    Vec<uint16_t, V> out;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const int c = c0 + j;
      out.v[j] = c < C ? f_to_bf(x[(n * C + c) * HW + q]) : uint16_t{0};
    }
    store<uint16_t, V>(y + pix * Cy + c0, out);
  }
}

// One thread per (n, c): neighbouring threads read neighbouring channels (coalesced), and each
// sums its HW pixels in order, as the reference does.
template <class In, class Out>
__global__ void avgpool_kernel(const In* x, Out* y, int N, int HW, int C) {
  MDQ_GRID_STRIDE(i, int64_t(N) * C) {
    const int64_t n = i / C, c = i % C;
    float s = 0.f;
    for (int p = 0; p < HW; ++p) s = __fadd_rn(s, to_f(x[(n * HW + p) * C + c]));
    y[i] = from_f<Out>(__fdiv_rn(s, static_cast<float>(HW)));
  }
}

// Split-bf16, V consecutive channels of one pixel per thread (C % V == 0): one f32 x V load,
// two bf16 x V stores (hi at channel c, lo at C + c). groups = P*C / V.
template <int V>
__global__ void split_bf16_kernel(const float* x, uint16_t* y, int64_t groups, int C) {
  MDQ_GRID_STRIDE(g, groups) {
    const int64_t i0 = g * V, p = i0 / C;
    const int c0 = static_cast<int>(i0 - p * C);
    const Vec<float, V> a = load<float, V>(x + i0);
    Vec<uint16_t, V> hi, lo;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      hi.v[j] = f_to_bf(a.v[j]);
      const float h = bf_to_f(hi.v[j]);
      lo.v[j] = isfinite(h) ? f_to_bf(__fsub_rn(a.v[j], h)) : uint16_t{0};
    }
    uint16_t* row = y + p * 2 * C + c0;
    store<uint16_t, V>(row, hi);
    store<uint16_t, V>(row + C, lo);
  }
}

bool aligned(const void* p, int bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

}  // namespace

template <class T>
void affine_act_nhwc(const T* x, const float* scale, const float* shift, const T* residual, bool relu, T* y, int64_t P,
                     int C) {
  constexpr int V = kWide<T>;
  const int64_t n = P * C;
  if (n == 0) return;
  if (C % V == 0 && aligned(x, 16) && aligned(y, 16) && (!residual || aligned(residual, 16))) {
    affine_act_kernel<T, V><<<cuda::grid_for(n / V), 256, 0, cuda::stream()>>>(x, scale, shift, residual, relu, y,
                                                                               n / V, C);
  } else {
    affine_act_kernel<T, 1><<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(x, scale, shift, residual, relu, y, n, C);
  }
  CUDA_CHECK_LAUNCH();
}

void residual_add_f32(const float* x, const float* r_f32, const uint16_t* r_bf16, float* y, int64_t n) {
  if (n == 0) return;
  if (n % 4 == 0 && aligned(x, 16) && aligned(y, 16) && (r_f32 ? aligned(r_f32, 16) : aligned(r_bf16, 8))) {
    residual_add_kernel<4><<<cuda::grid_for(n / 4), 256, 0, cuda::stream()>>>(x, r_f32, r_bf16, y, n / 4);
  } else {
    residual_add_kernel<1><<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(x, r_f32, r_bf16, y, n);
  }
  CUDA_CHECK_LAUNCH();
}

template <class T>
void maxpool_nhwc(const T* x, T* y, int N, int H, int W, int C, int k, int s, int p) {
  constexpr int V = kWide<T>;
  const int OH = ops::window_output_size(H, k, s, p), OW = ops::window_output_size(W, k, s, p);
  const int64_t out = int64_t(N) * OH * OW * C;
  if (out <= 0) return;
  if (C % V == 0 && aligned(x, 16) && aligned(y, 16)) {
    maxpool_kernel<T, V><<<cuda::grid_for(out / V), 256, 0, cuda::stream()>>>(x, y, N, H, W, C, k, s, p, OH, OW);
  } else {
    maxpool_kernel<T, 1><<<cuda::grid_for(out), 256, 0, cuda::stream()>>>(x, y, N, H, W, C, k, s, p, OH, OW);
  }
  CUDA_CHECK_LAUNCH();
}

template <class In, class Out>
void avgpool_nhwc(const In* x, Out* y, int N, int HW, int C) {
  if (int64_t(N) * C == 0) return;
  avgpool_kernel<In, Out><<<cuda::grid_for(int64_t(N) * C), 256, 0, cuda::stream()>>>(x, y, N, HW, C);
  CUDA_CHECK_LAUNCH();
}

template <class In, class Out, bool Add = false>
static void batched_transpose(const In* x, Out* y, int64_t B, int64_t R, int64_t S) {
  if (B * R * S == 0) return;
  if (std::min(R, S) <= kShortSide) {
    const int64_t panels = B * ((std::max(R, S) + kPanel - 1) / kPanel);
    transpose_short_kernel<In, Out, Add>
        <<<static_cast<unsigned>(std::min<int64_t>(panels, int64_t(1) << 20)), kPanel, 0, cuda::stream()>>>(x, y, B, R,
                                                                                                          S);
    CUDA_CHECK_LAUNCH();
    return;
  }
  auto tiles = [](int64_t n, int64_t cap) {
    return static_cast<unsigned>(std::min<int64_t>((n + kTile - 1) / kTile, cap));
  };
  const dim3 grid(tiles(S, int64_t(1) << 20), tiles(R, 65535), static_cast<unsigned>(std::min<int64_t>(B, 65535)));
  // Matrix b starts at b*R*S elements: with R*S even every matrix keeps the base's alignment.
  const bool pairs_in = S % 2 == 0 && aligned(x, 2 * sizeof(In));
  const bool pairs_out = R % 2 == 0 && aligned(y, 2 * sizeof(Out));
  transpose_kernel<In, Out, Add><<<grid, dim3(32, kTileRows), 0, cuda::stream()>>>(x, y, B, R, S, pairs_in, pairs_out);
  CUDA_CHECK_LAUNCH();
}

template <class Out>
void nchw_f32_to_nhwc(const float* x, Out* y, int64_t N, int C, int64_t HW) {
  batched_transpose<float, Out>(x, y, N, C, HW);
}

void nchw_f32_to_nhwc_bf16_padded(const float* x, uint16_t* y, int64_t N, int C, int Cy, int64_t HW) {
  if (N * HW * Cy == 0) return;
  if (Cy % 8 == 0 && aligned(y, 16)) {
    nchw_to_nhwc_padded_kernel<8><<<cuda::grid_for(N * HW * Cy / 8), 256, 0, cuda::stream()>>>(x, y, N, C, Cy, HW);
  } else {
    nchw_to_nhwc_padded_kernel<1><<<cuda::grid_for(N * HW * Cy), 256, 0, cuda::stream()>>>(x, y, N, C, Cy, HW);
  }
  CUDA_CHECK_LAUNCH();
}

template <class T>
void nhwc_to_nchw(const T* x, T* y, int64_t N, int64_t HW, int C) {
  batched_transpose<T, T>(x, y, N, HW, C);
}

void nhwc_bf16_to_nchw_f32(const uint16_t* x, float* y, int64_t N, int64_t HW, int C) {
  batched_transpose<uint16_t, float>(x, y, N, HW, C);
}

void nhwc_bf16_add_to_nchw_f32(const uint16_t* x, float* y, int64_t N, int64_t HW, int C) {
  batched_transpose<uint16_t, float, true>(x, y, N, HW, C);
}

void subsample_nhwc_bf16(const uint16_t* x, uint16_t* y, int64_t N, int H, int W, int C, int s) {
  stride_pixels<false>(x, y, N, H, W, C, s);
}

void upsample_zero_nhwc_bf16(const uint16_t* x, uint16_t* y, int64_t N, int H, int W, int C, int s) {
  stride_pixels<true>(x, y, N, H, W, C, s);
}

void im2col_nhwc_bf16(const uint16_t* x, uint16_t* cols, int64_t N, int H, int W, int C, int KH, int KW, int s, int p,
                      int ld) {
  MDQ_CHECK(ld >= C * KH * KW, "im2col_nhwc_bf16: rows of " << ld << " columns cannot hold " << C << " channels x "
                                                              << KH << "x" << KW << " taps");
  const int OH = ops::window_output_size(H, KH, s, p), OW = ops::window_output_size(W, KW, s, p);
  const int64_t n = N * OH * OW * ld;
  if (n <= 0) return;
  constexpr int V = kWide<uint16_t>;
  if (ld % V == 0 && cuda::aligned16(cols)) {
    im2col_kernel<V><<<cuda::grid_for(n / V), 256, 0, cuda::stream()>>>(x, cols, N, H, W, C, KH, KW, s, p, OH, OW, ld);
  } else {
    im2col_kernel<1><<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(x, cols, N, H, W, C, KH, KW, s, p, OH, OW, ld);
  }
  CUDA_CHECK_LAUNCH();
}

void copy_channels_bf16(const uint16_t* x, int cx, uint16_t* y, int cy, int64_t P) {
  if (P * cy == 0) return;
  copy_channels_kernel<<<cuda::grid_for(P * cy), 256, 0, cuda::stream()>>>(x, cx, y, cy, P);
  CUDA_CHECK_LAUNCH();
}

void split_bf16_nhwc(const float* x, uint16_t* y, int64_t P, int C) {
  const int64_t n = P * C;
  if (n == 0) return;
  // f32 x 4 in (16 bytes), bf16 x 4 out twice (8 bytes each, at channel c and C + c).
  if (C % 4 == 0 && aligned(x, 16) && aligned(y, 8)) {
    split_bf16_kernel<4><<<cuda::grid_for(n / 4), 256, 0, cuda::stream()>>>(x, y, n / 4, C);
  } else {
    split_bf16_kernel<1><<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(x, y, n, C);
  }
  CUDA_CHECK_LAUNCH();
}

// The two element types each pass exists for (kernels/nhwc_bf16.h).
template void affine_act_nhwc<uint16_t>(const uint16_t*, const float*, const float*, const uint16_t*, bool, uint16_t*,
                                        int64_t, int);
template void affine_act_nhwc<float>(const float*, const float*, const float*, const float*, bool, float*, int64_t,
                                     int);
template void maxpool_nhwc<uint16_t>(const uint16_t*, uint16_t*, int, int, int, int, int, int, int);
template void maxpool_nhwc<float>(const float*, float*, int, int, int, int, int, int, int);
template void avgpool_nhwc<uint16_t, uint16_t>(const uint16_t*, uint16_t*, int, int, int);
template void avgpool_nhwc<float, uint16_t>(const float*, uint16_t*, int, int, int);
template void avgpool_nhwc<float, float>(const float*, float*, int, int, int);
template void nchw_f32_to_nhwc<uint16_t>(const float*, uint16_t*, int64_t, int, int64_t);
template void nchw_f32_to_nhwc<float>(const float*, float*, int64_t, int, int64_t);
template void nhwc_to_nchw<uint16_t>(const uint16_t*, uint16_t*, int64_t, int64_t, int);
template void nhwc_to_nchw<float>(const float*, float*, int64_t, int64_t, int);

void register_nhwc_bf16(CudaBackend& b) {
  b.affine_act_nhwc_f32 = affine_act_nhwc<float>;
  b.affine_act_nhwc_bf16 = affine_act_nhwc<uint16_t>;
  b.maxpool_nhwc_f32 = maxpool_nhwc<float>;
  b.maxpool_nhwc_bf16 = maxpool_nhwc<uint16_t>;
  b.avgpool_nhwc_f32 = avgpool_nhwc<float, float>;
  b.avgpool_nhwc_bf16 = avgpool_nhwc<uint16_t, uint16_t>;
  b.nchw_f32_to_nhwc_f32 = nchw_f32_to_nhwc<float>;
  b.nchw_f32_to_nhwc_bf16 = nchw_f32_to_nhwc<uint16_t>;
  b.nchw_f32_to_nhwc_bf16_padded = nchw_f32_to_nhwc_bf16_padded;
  b.nhwc_to_nchw_f32 = nhwc_to_nchw<float>;
  b.nhwc_to_nchw_bf16 = nhwc_to_nchw<uint16_t>;
  b.nhwc_bf16_to_nchw_f32 = nhwc_bf16_to_nchw_f32;
  b.split_bf16_nhwc = split_bf16_nhwc;
}

}  // namespace mdq::kernels

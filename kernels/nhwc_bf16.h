// Small NHWC kernels that an inference forward pass needs around its convolutions (the packed
// runner, engine/infer, and benchmarks/bench_packed_resnet18.cu; the layout changes, the channel
// padding, the strided subsampling and im2col also serve the bf16 training convolutions,
// kernels/conv2d.cu): folded-BatchNorm affine +
// residual + ReLU, a float residual add for the binary (W1A1) network's real-valued shortcut
// stream, max pooling with any window, global average pooling, the layout changes between the
// engine's NCHW f32 and NHWC (a Flatten must see the float engine's order), and the split of
// f32 activations into bf16 hi + lo halves (the runner's split-bf16 precision, see below).
// Element types: T = uint16_t means bf16 bits, T = float means f32; the templates below are
// instantiated for exactly those two (kernels/nhwc_bf16.cu), so the bf16 and f32 versions of a
// pass are one implementation. Launchers take device pointers and queue on mdq::cuda::stream();
// the CPU references below are plain loops on host pointers, with the same f32 arithmetic and
// at most one bf16 rounding at the end, so the GPU should match them bit for bit.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "common/window.h"
#include "common/bf16.h"

namespace mdq::kernels {

// y[p][c] = act(fma(x[p][c], scale[c], shift[c]) + r[p][c]) in f32, then stored as T (one bf16
// rounding for T = uint16_t). scale, shift, residual may be null (1, 0, 0); act is max(0, .)
// when relu. x, r, y: [P][C].
template <class T>
void affine_act_nhwc(const T* x, const float* scale, const float* shift, const T* residual, bool relu, T* y, int64_t P,
                     int C);
inline void affine_act_nhwc_bf16(const uint16_t* x, const float* scale, const float* shift, const uint16_t* residual,
                                 bool relu, uint16_t* y, int64_t P, int C) {
  affine_act_nhwc<uint16_t>(x, scale, shift, residual, relu, y, P, C);
}
// y[i] = x[i] + r[i] in f32; r is f32 (r_f32) or bf16 (r_bf16): exactly one is non-null.
void residual_add_f32(const float* x, const float* r_f32, const uint16_t* r_bf16, float* y, int64_t n);
// Max over k x k windows moved by s over x [N][H][W][C] padded by p (padding never wins) ->
// y [N][OH][OW][C], OH = ops::window_output_size(H, k, s, p) (common/window.h).
template <class T>
void maxpool_nhwc(const T* x, T* y, int N, int H, int W, int C, int k, int s, int p);
inline void maxpool_nhwc_bf16(const uint16_t* x, uint16_t* y, int N, int H, int W, int C, int k, int s, int p) {
  maxpool_nhwc<uint16_t>(x, y, N, H, W, C, k, s, p);
}
// y[n][c] = (sum over the HW pixels of x[n][.][c], in pixel order, in f32) / HW, stored as Out.
template <class In, class Out>
void avgpool_nhwc(const In* x, Out* y, int N, int HW, int C);
inline void avgpool_nhwc_bf16(const uint16_t* x, uint16_t* y, int N, int HW, int C) {
  avgpool_nhwc<uint16_t, uint16_t>(x, y, N, HW, C);
}
inline void avgpool_nhwc_f32_to_bf16(const float* x, uint16_t* y, int N, int HW, int C) {
  avgpool_nhwc<float, uint16_t>(x, y, N, HW, C);
}
// x f32 [N][C][HW] -> y [N][HW][C] as Out (bf16: round to nearest even; f32: a copy).
template <class Out>
void nchw_f32_to_nhwc(const float* x, Out* y, int64_t N, int C, int64_t HW);
inline void nchw_f32_to_nhwc_bf16(const float* x, uint16_t* y, int64_t N, int C, int64_t HW) {
  nchw_f32_to_nhwc<uint16_t>(x, y, N, C, HW);
}
// x f32 [N][C][HW] -> y bf16 [N][HW][Cy], Cy >= C: the channels rounded to nearest even and
// zero-padded up to Cy in the same pass. cuDNN's bf16 convolutions want a multiple of 8 input
// channels; a stem's 3-channel images converted this way go to it without the separate channel
// copy (copy_channels_bf16) that a 3-channel NHWC input costs inside conv2d_forward_nhwc_bf16.
// The CUDA pass writes 8 channels per 16-byte store when Cy % 8 == 0.
void nchw_f32_to_nhwc_bf16_padded(const float* x, uint16_t* y, int64_t N, int C, int Cy, int64_t HW);
// x [N][HW][C] -> y [N][C][HW] (a copy, no rounding).
template <class T>
void nhwc_to_nchw(const T* x, T* y, int64_t N, int64_t HW, int C);
inline void nhwc_to_nchw_bf16(const uint16_t* x, uint16_t* y, int64_t N, int64_t HW, int C) {
  nhwc_to_nchw<uint16_t>(x, y, N, HW, C);
}
// x bf16 [N][HW][C] -> y f32 [N][C][HW] (exact: every bf16 is an f32).
void nhwc_bf16_to_nchw_f32(const uint16_t* x, float* y, int64_t N, int64_t HW, int C);
// The same added into y: y [N][C][HW] += x [N][HW][C] (one f32 addition per element).
void nhwc_bf16_add_to_nchw_f32(const uint16_t* x, float* y, int64_t N, int64_t HW, int C);
// A 1x1 convolution with stride s reads only the pixels at rows and columns 0, s, 2s, ...; its
// GEMM (kernels/conv2d.cu) runs on those: subsample takes x [N][H][W][C] at them into
// y [N][OH][OW][C], OH = ceil(H / s); upsample_zero is its adjoint, x [N][OH][OW][C] back into
// y [N][H][W][C] at those pixels, 0 elsewhere (bf16, exact copies).
void subsample_nhwc_bf16(const uint16_t* x, uint16_t* y, int64_t N, int H, int W, int C, int s);
void upsample_zero_nhwc_bf16(const uint16_t* x, uint16_t* y, int64_t N, int H, int W, int C, int s);
// The im2col of a groups-1 convolution with a KH x KW window, stride s and zero padding p over
// x [N][H][W][C] (bf16): cols [N*OH*OW][ld], OH = ops::window_output_size(H, KH, s, p), where
// row (n, oh, ow) holds the window's inputs in the weight's own order, column (c * KH + kh) * KW
// + kw = x[n][oh*s - p + kh][ow*s - p + kw][c], 0 where that falls in the padding, and 0 in the
// columns from C*KH*KW to ld (ld >= C*KH*KW: rows padded for the GEMM's aligned loads). A
// convolution with few input channels (the 3-channel stems) is then one GEMM with the weight
// [O][C*KH*KW] as it is stored (kernels/conv2d.cu). Exact copies.
void im2col_nhwc_bf16(const uint16_t* x, uint16_t* cols, int64_t N, int H, int W, int C, int KH, int KW, int s, int p,
                      int ld);
// y [P][cy] = x [P][cx] with the channels cut to cy or zero-padded up to it (bf16): a
// convolution whose channel count the bf16 kernels do not take runs on channels padded to a
// multiple of 8 (kernels/conv2d.cu), and its gradients come back cut.
void copy_channels_bf16(const uint16_t* x, int cx, uint16_t* y, int cy, int64_t P);
// Split-bf16: x f32 [P][C] -> y bf16 [P][2C], y[p][c] = hi = bf16(a), y[p][C + c] = lo =
// bf16(a - hi) for a = x[p][c], both rounded to nearest even. a - hi is exact in f32 and
// |a - hi| <= 2^-8 |a|, so hi + lo carries 16 significant bits (|a - hi - lo| <= 2^-16 |a|,
// vs 2^-8 for bf16 alone and 2^-11 for tf32), and a convolution with weights
// doubled along the input channels ([O][2C], each weight for hi and for lo) computes
// sum w (hi + lo) on the unchanged bf16 kernels. When hi is not finite (a NaN, an infinity, or
// a near FLT_MAX that rounds up to one) lo = 0, so hi + lo is hi rather than NaN.
void split_bf16_nhwc(const float* x, uint16_t* y, int64_t P, int C);

// ---- CPU references (host pointers).
namespace reference {

inline float bf(uint16_t b) { return bf16_to_float(b); }
inline float to_f(uint16_t b) { return bf(b); }
inline float to_f(float v) { return v; }
template <class T>
T from_f(float v);
template <>
inline uint16_t from_f<uint16_t>(float v) { return float_to_bf16(v); }
template <>
inline float from_f<float>(float v) { return v; }

template <class T>
void affine_act_nhwc(const T* x, const float* scale, const float* shift, const T* residual, bool relu, T* y, int64_t P,
                     int C) {
  for (int64_t p = 0; p < P; ++p)
    for (int c = 0; c < C; ++c) {
      const int64_t i = p * C + c;
      float v = std::fma(to_f(x[i]), scale ? scale[c] : 1.f, shift ? shift[c] : 0.f);
      if (residual) v += to_f(residual[i]);
      if (relu) v = std::max(v, 0.f);
      y[i] = from_f<T>(v);
    }
}
inline void affine_act_nhwc_bf16(const uint16_t* x, const float* scale, const float* shift, const uint16_t* residual,
                                 bool relu, uint16_t* y, int64_t P, int C) {
  affine_act_nhwc<uint16_t>(x, scale, shift, residual, relu, y, P, C);
}

inline void residual_add_f32(const float* x, const float* r_f32, const uint16_t* r_bf16, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] + (r_f32 ? r_f32[i] : bf(r_bf16[i]));
}

template <class Out>
void nchw_f32_to_nhwc(const float* x, Out* y, int64_t N, int C, int64_t HW) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t q = 0; q < HW; ++q)
      for (int c = 0; c < C; ++c) y[(n * HW + q) * C + c] = from_f<Out>(x[(n * C + c) * HW + q]);
}
inline void nchw_f32_to_nhwc_bf16(const float* x, uint16_t* y, int64_t N, int C, int64_t HW) {
  nchw_f32_to_nhwc<uint16_t>(x, y, N, C, HW);
}

inline void nchw_f32_to_nhwc_bf16_padded(const float* x, uint16_t* y, int64_t N, int C, int Cy, int64_t HW) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t q = 0; q < HW; ++q)
      for (int c = 0; c < Cy; ++c)
        y[(n * HW + q) * Cy + c] = c < C ? float_to_bf16(x[(n * C + c) * HW + q]) : uint16_t{0};
}

template <class T>
void nhwc_to_nchw(const T* x, T* y, int64_t N, int64_t HW, int C) {
  for (int64_t n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c)
      for (int64_t q = 0; q < HW; ++q) y[(n * C + c) * HW + q] = x[(n * HW + q) * C + c];
}
inline void nhwc_to_nchw_bf16(const uint16_t* x, uint16_t* y, int64_t N, int64_t HW, int C) {
  nhwc_to_nchw<uint16_t>(x, y, N, HW, C);
}
inline void nhwc_bf16_to_nchw_f32(const uint16_t* x, float* y, int64_t N, int64_t HW, int C) {
  for (int64_t n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c)
      for (int64_t q = 0; q < HW; ++q) y[(n * C + c) * HW + q] = bf(x[(n * HW + q) * C + c]);
}
inline void nhwc_bf16_add_to_nchw_f32(const uint16_t* x, float* y, int64_t N, int64_t HW, int C) {
  for (int64_t n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c)
      for (int64_t q = 0; q < HW; ++q) y[(n * C + c) * HW + q] += bf(x[(n * HW + q) * C + c]);
}

template <class T>
void maxpool_nhwc(const T* x, T* y, int N, int H, int W, int C, int k, int s, int p) {
  const int OH = ops::window_output_size(H, k, s, p), OW = ops::window_output_size(W, k, s, p);
  for (int n = 0; n < N; ++n)
    for (int oh = 0; oh < OH; ++oh)
      for (int ow = 0; ow < OW; ++ow)
        for (int c = 0; c < C; ++c) {
          float m = -std::numeric_limits<float>::infinity();
          for (int kh = 0; kh < k; ++kh)
            for (int kw = 0; kw < k; ++kw) {
              const int ih = oh * s - p + kh, iw = ow * s - p + kw;
              if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
              m = std::max(m, to_f(x[((int64_t(n) * H + ih) * W + iw) * C + c]));
            }
          y[((int64_t(n) * OH + oh) * OW + ow) * C + c] = from_f<T>(m);
        }
}
inline void maxpool_nhwc_bf16(const uint16_t* x, uint16_t* y, int N, int H, int W, int C, int k, int s, int p) {
  maxpool_nhwc<uint16_t>(x, y, N, H, W, C, k, s, p);
}

template <class In, class Out>
void avgpool_nhwc(const In* x, Out* y, int N, int HW, int C) {
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c) {
      float s = 0.f;
      for (int p = 0; p < HW; ++p) s += to_f(x[(int64_t(n) * HW + p) * C + c]);
      y[int64_t(n) * C + c] = from_f<Out>(s / static_cast<float>(HW));
    }
}
inline void avgpool_nhwc_bf16(const uint16_t* x, uint16_t* y, int N, int HW, int C) {
  avgpool_nhwc<uint16_t, uint16_t>(x, y, N, HW, C);
}
inline void avgpool_nhwc_f32_to_bf16(const float* x, uint16_t* y, int N, int HW, int C) {
  avgpool_nhwc<float, uint16_t>(x, y, N, HW, C);
}

// Both directions of the strided pixels: each element at rows and columns 0, s, 2s, ... of the
// full map [N][H][W][C] paired with its place in the subsampled one [N][OH][OW][C]. Up = false:
// y (subsampled) = x (full) at those pairs; Up = true, the adjoint: y (full) zero, then x
// (subsampled) written back at them.
template <bool Up>
inline void stride_pixels_nhwc_bf16(const uint16_t* x, uint16_t* y, int64_t N, int H, int W, int C, int s) {
  const int OH = (H + s - 1) / s, OW = (W + s - 1) / s;
  if constexpr (Up) std::fill(y, y + N * H * W * C, uint16_t{0});
  for (int64_t n = 0; n < N; ++n)
    for (int oh = 0; oh < OH; ++oh)
      for (int ow = 0; ow < OW; ++ow)
        for (int c = 0; c < C; ++c) {
          const int64_t full = ((n * H + int64_t(oh) * s) * W + int64_t(ow) * s) * C + c;
          const int64_t sub = ((n * OH + oh) * OW + ow) * C + c;
          if constexpr (Up) y[full] = x[sub];
          else y[sub] = x[full];
        }
}
inline void subsample_nhwc_bf16(const uint16_t* x, uint16_t* y, int64_t N, int H, int W, int C, int s) {
  stride_pixels_nhwc_bf16<false>(x, y, N, H, W, C, s);
}
inline void upsample_zero_nhwc_bf16(const uint16_t* x, uint16_t* y, int64_t N, int H, int W, int C, int s) {
  stride_pixels_nhwc_bf16<true>(x, y, N, H, W, C, s);
}

inline void im2col_nhwc_bf16(const uint16_t* x, uint16_t* cols, int64_t N, int H, int W, int C, int KH, int KW, int s,
                             int p, int ld) {
  const int OH = ops::window_output_size(H, KH, s, p), OW = ops::window_output_size(W, KW, s, p);
  for (int64_t n = 0; n < N; ++n)
    for (int oh = 0; oh < OH; ++oh)
      for (int ow = 0; ow < OW; ++ow) {
        uint16_t* row = cols + ((n * OH + oh) * OW + ow) * ld;
        std::fill(row, row + ld, uint16_t{0});
        for (int c = 0; c < C; ++c)
          for (int kh = 0; kh < KH; ++kh)
            for (int kw = 0; kw < KW; ++kw) {
              const int ih = oh * s - p + kh, iw = ow * s - p + kw;
              if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
              row[(c * KH + kh) * KW + kw] = x[((n * H + ih) * W + iw) * C + c];
            }
      }
}

inline void copy_channels_bf16(const uint16_t* x, int cx, uint16_t* y, int cy, int64_t P) {
  for (int64_t p = 0; p < P; ++p)
    for (int c = 0; c < cy; ++c) y[p * cy + c] = c < cx ? x[p * cx + c] : uint16_t{0};
}

inline void split_bf16_nhwc(const float* x, uint16_t* y, int64_t P, int C) {
  for (int64_t p = 0; p < P; ++p)
    for (int c = 0; c < C; ++c) {
      const float a = x[p * C + c];
      const uint16_t hi = float_to_bf16(a);
      const float h = bf(hi);
      y[p * 2 * C + c] = hi;
      y[p * 2 * C + C + c] = std::isfinite(h) ? float_to_bf16(a - h) : uint16_t{0};
    }
}

}  // namespace reference
}  // namespace mdq::kernels

// Small NHWC kernels that an inference forward pass needs around its convolutions (the packed
// runner, engine/infer, and benchmarks/bench_packed_resnet18.cu): folded-BatchNorm affine +
// residual + ReLU on bf16, a float residual add for the binary (W1A1) network's real-valued
// shortcut stream, max pooling with any window, global average pooling, and the layout changes
// between the engine's NCHW f32 and NHWC bf16 (a Flatten must see the float engine's order). Launchers take device pointers and queue on
// mdq::cuda::stream(); the CPU references below are plain loops on host pointers, with the same
// f32 arithmetic and one bf16 rounding at the end, so the GPU should match them bit for bit.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "engine/packed/bitpack.h"

namespace mdq::kernels {

// y[p][c] = act(fma(x[p][c], scale[c], shift[c]) + r[p][c]), in f32, rounded once to bf16.
// scale, shift, residual may be null (1, 0, 0); act is max(0, .) when relu. x, r, y: [P][C].
void affine_act_nhwc_bf16(const uint16_t* x, const float* scale, const float* shift, const uint16_t* residual,
                          bool relu, uint16_t* y, int64_t P, int C);
// y[i] = x[i] + r[i] in f32; r is f32 (r_f32) or bf16 (r_bf16): exactly one is non-null.
void residual_add_f32(const float* x, const float* r_f32, const uint16_t* r_bf16, float* y, int64_t n);
// Max over k x k windows moved by s over x [N][H][W][C] padded by p (padding never wins) ->
// y [N][OH][OW][C], OH = maxpool_out_size(H, k, s, p) (floor, as engine/ops/pooling.h).
void maxpool_nhwc_bf16(const uint16_t* x, uint16_t* y, int N, int H, int W, int C, int k, int s, int p);
inline int maxpool_out_size(int in, int k, int s, int p) { return (in + 2 * p - k) / s + 1; }
// y[n][c] = (sum over the HW pixels of x[n][.][c], in pixel order, in f32) / HW, as bf16.
void avgpool_nhwc_bf16(const uint16_t* x, uint16_t* y, int N, int HW, int C);
void avgpool_nhwc_f32_to_bf16(const float* x, uint16_t* y, int N, int HW, int C);
// x f32 [N][C][HW] -> y bf16 [N][HW][C], round to nearest even.
void nchw_f32_to_nhwc_bf16(const float* x, uint16_t* y, int64_t N, int C, int64_t HW);
// x bf16 [N][HW][C] -> y bf16 [N][C][HW] (a copy, no rounding).
void nhwc_to_nchw_bf16(const uint16_t* x, uint16_t* y, int64_t N, int64_t HW, int C);

// ---- CPU references (host pointers).
namespace reference {

inline float bf(uint16_t b) { return packed::bf16_to_float(b); }

inline void affine_act_nhwc_bf16(const uint16_t* x, const float* scale, const float* shift, const uint16_t* residual,
                                 bool relu, uint16_t* y, int64_t P, int C) {
  for (int64_t p = 0; p < P; ++p)
    for (int c = 0; c < C; ++c) {
      const int64_t i = p * C + c;
      float v = std::fma(bf(x[i]), scale ? scale[c] : 1.f, shift ? shift[c] : 0.f);
      if (residual) v += bf(residual[i]);
      if (relu) v = std::max(v, 0.f);
      y[i] = packed::float_to_bf16(v);
    }
}

inline void residual_add_f32(const float* x, const float* r_f32, const uint16_t* r_bf16, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] + (r_f32 ? r_f32[i] : bf(r_bf16[i]));
}

inline void nchw_f32_to_nhwc_bf16(const float* x, uint16_t* y, int64_t N, int C, int64_t HW) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t q = 0; q < HW; ++q)
      for (int c = 0; c < C; ++c) y[(n * HW + q) * C + c] = packed::float_to_bf16(x[(n * C + c) * HW + q]);
}

inline void nhwc_to_nchw_bf16(const uint16_t* x, uint16_t* y, int64_t N, int64_t HW, int C) {
  for (int64_t n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c)
      for (int64_t q = 0; q < HW; ++q) y[(n * C + c) * HW + q] = x[(n * HW + q) * C + c];
}

inline void maxpool_nhwc_bf16(const uint16_t* x, uint16_t* y, int N, int H, int W, int C, int k, int s, int p) {
  const int OH = maxpool_out_size(H, k, s, p), OW = maxpool_out_size(W, k, s, p);
  for (int n = 0; n < N; ++n)
    for (int oh = 0; oh < OH; ++oh)
      for (int ow = 0; ow < OW; ++ow)
        for (int c = 0; c < C; ++c) {
          float m = -std::numeric_limits<float>::infinity();
          for (int kh = 0; kh < k; ++kh)
            for (int kw = 0; kw < k; ++kw) {
              const int ih = oh * s - p + kh, iw = ow * s - p + kw;
              if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
              m = std::max(m, bf(x[((int64_t(n) * H + ih) * W + iw) * C + c]));
            }
          y[((int64_t(n) * OH + oh) * OW + ow) * C + c] = packed::float_to_bf16(m);
        }
}


template <class In, class Load>
void avgpool_nhwc(const In* x, uint16_t* y, int N, int HW, int C, Load load) {
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c) {
      float s = 0.f;
      for (int p = 0; p < HW; ++p) s += load(x[(int64_t(n) * HW + p) * C + c]);
      y[int64_t(n) * C + c] = packed::float_to_bf16(s / static_cast<float>(HW));
    }
}
inline void avgpool_nhwc_bf16(const uint16_t* x, uint16_t* y, int N, int HW, int C) {
  avgpool_nhwc(x, y, N, HW, C, [](uint16_t v) { return bf(v); });
}
inline void avgpool_nhwc_f32_to_bf16(const float* x, uint16_t* y, int N, int HW, int C) {
  avgpool_nhwc(x, y, N, HW, C, [](float v) { return v; });
}

}  // namespace reference
}  // namespace mdq::kernels

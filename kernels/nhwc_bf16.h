// Small NHWC kernels that an inference forward pass needs around its convolutions (used by
// benchmarks/bench_packed_resnet18.cu): folded-BatchNorm affine + residual + ReLU on bf16, a
// float residual add for the binary (W1A1) network's real-valued shortcut stream, 3x3/2 max
// pooling and global average pooling. Launchers take device pointers and queue on
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
// Max over a 3x3 window, stride 2, padding 1 (padding never wins): x [N][H][W][C] ->
// y [N][OH][OW][C], OH = (H - 1) / 2 + 1.
void maxpool3x3s2_nhwc_bf16(const uint16_t* x, uint16_t* y, int N, int H, int W, int C);
// y[n][c] = (sum over the HW pixels of x[n][.][c], in pixel order, in f32) / HW, as bf16.
void avgpool_nhwc_bf16(const uint16_t* x, uint16_t* y, int N, int HW, int C);
void avgpool_nhwc_f32_to_bf16(const float* x, uint16_t* y, int N, int HW, int C);

inline int pool_out_size(int in) { return (in - 1) / 2 + 1; }  // 3x3, stride 2, padding 1

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

inline void maxpool3x3s2_nhwc_bf16(const uint16_t* x, uint16_t* y, int N, int H, int W, int C) {
  const int OH = pool_out_size(H), OW = pool_out_size(W);
  for (int n = 0; n < N; ++n)
    for (int oh = 0; oh < OH; ++oh)
      for (int ow = 0; ow < OW; ++ow)
        for (int c = 0; c < C; ++c) {
          float m = -std::numeric_limits<float>::infinity();
          for (int kh = 0; kh < 3; ++kh)
            for (int kw = 0; kw < 3; ++kw) {
              const int ih = 2 * oh - 1 + kh, iw = 2 * ow - 1 + kw;
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

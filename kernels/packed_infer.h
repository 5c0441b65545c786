// Layout and pooling kernels that the packed inference runner (apps/common/packed_runner.cpp)
// needs around kernels/nhwc_bf16.h's: the network's NCHW f32 images to NHWC bf16, NHWC bf16
// back to NCHW order (so a Flatten feeds a linear layer the features in the float engine's
// order) and max pooling with any window (smallcnn/VGG's 2x2/2). Launchers take device pointers
// and queue on mdq::cuda::stream(); the CPU references below are plain loops on host pointers
// and the GPU matches them bit for bit (one rounding, or none).
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>

#include "engine/packed/bitpack.h"

namespace mdq::kernels {

// x f32 [N][C][HW] -> y bf16 [N][HW][C], round to nearest even.
void nchw_f32_to_nhwc_bf16(const float* x, uint16_t* y, int64_t N, int C, int64_t HW);
// x bf16 [N][HW][C] -> y bf16 [N][C][HW] (a copy, no rounding).
void nhwc_to_nchw_bf16(const uint16_t* x, uint16_t* y, int64_t N, int64_t HW, int C);
// Max over k x k windows moved by s over x [N][H][W][C] padded by p (padding never wins) ->
// y [N][OH][OW][C], OH = (H + 2p - k) / s + 1 (floor, as engine/ops/pooling.h); p <= k / 2.
void maxpool_nhwc_bf16(const uint16_t* x, uint16_t* y, int N, int H, int W, int C, int k, int s, int p);

inline int maxpool_out_size(int in, int k, int s, int p) { return (in + 2 * p - k) / s + 1; }

// ---- CPU references (host pointers).
namespace reference {

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
              m = std::max(m, packed::bf16_to_float(x[((int64_t(n) * H + ih) * W + iw) * C + c]));
            }
          y[((int64_t(n) * OH + oh) * OW + ow) * C + c] = packed::float_to_bf16(m);
        }
}

}  // namespace reference
}  // namespace mdq::kernels

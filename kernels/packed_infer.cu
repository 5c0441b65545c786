// The packed inference runner's layout and pooling kernels (kernels/packed_infer.h): one thread
// per output element, grid-stride. These passes touch each activation once and sit between
// convolutions that cost far more, so they stay simple; the results equal the CPU references
// exactly (a bf16 round to nearest even, or a plain copy / max).
#include <cuda_bf16.h>

#include <cstdint>

#include "engine/cuda_context.h"
#include "kernels/packed_infer.h"

namespace mdq::kernels {
namespace {

#define MDQ_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

__device__ __forceinline__ float bf_to_f(uint16_t u) { return __bfloat162float(__ushort_as_bfloat16(u)); }
__device__ __forceinline__ uint16_t f_to_bf(float v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }

constexpr int kThreads = 256;
unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 65535 * 16 ? b : 65535 * 16);
}

// Indexed by the output (NHWC) so the bf16 stores are coalesced.
__global__ void nchw_to_nhwc_kernel(const float* x, uint16_t* y, int64_t N, int C, int64_t HW) {
  MDQ_GRID_STRIDE(i, N * HW * C) {
    const int c = static_cast<int>(i % C);
    const int64_t q = (i / C) % HW, n = i / (C * HW);
    y[i] = f_to_bf(x[(n * C + c) * HW + q]);
  }
}

__global__ void nhwc_to_nchw_kernel(const uint16_t* x, uint16_t* y, int64_t N, int64_t HW, int C) {
  MDQ_GRID_STRIDE(i, N * HW * C) {
    const int64_t q = i % HW, c = (i / HW) % C, n = i / (HW * C);
    y[i] = x[(n * HW + q) * C + c];
  }
}

__global__ void maxpool_kernel(const uint16_t* x, uint16_t* y, int N, int H, int W, int C, int k, int s, int p,
                               int OH, int OW) {
  MDQ_GRID_STRIDE(i, (int64_t)N * OH * OW * C) {
    const int c = static_cast<int>(i % C);
    const int ow = static_cast<int>((i / C) % OW), oh = static_cast<int>((i / ((int64_t)C * OW)) % OH);
    const int64_t n = i / ((int64_t)C * OW * OH);
    float m = -INFINITY;
    for (int kh = 0; kh < k; ++kh) {
      const int ih = oh * s - p + kh;
      if (ih < 0 || ih >= H) continue;
      for (int kw = 0; kw < k; ++kw) {
        const int iw = ow * s - p + kw;
        if (iw < 0 || iw >= W) continue;
        m = fmaxf(m, bf_to_f(x[((n * H + ih) * W + iw) * C + c]));
      }
    }
    y[i] = f_to_bf(m);
  }
}

}  // namespace

void nchw_f32_to_nhwc_bf16(const float* x, uint16_t* y, int64_t N, int C, int64_t HW) {
  const int64_t n = N * C * HW;
  if (n == 0) return;
  nchw_to_nhwc_kernel<<<blocks_for(n), kThreads, 0, cuda::stream()>>>(x, y, N, C, HW);
  CUDA_CHECK_LAUNCH();
}

void nhwc_to_nchw_bf16(const uint16_t* x, uint16_t* y, int64_t N, int64_t HW, int C) {
  const int64_t n = N * C * HW;
  if (n == 0) return;
  nhwc_to_nchw_kernel<<<blocks_for(n), kThreads, 0, cuda::stream()>>>(x, y, N, HW, C);
  CUDA_CHECK_LAUNCH();
}

void maxpool_nhwc_bf16(const uint16_t* x, uint16_t* y, int N, int H, int W, int C, int k, int s, int p) {
  const int OH = maxpool_out_size(H, k, s, p), OW = maxpool_out_size(W, k, s, p);
  const int64_t n = (int64_t)N * OH * OW * C;
  if (n <= 0) return;
  maxpool_kernel<<<blocks_for(n), kThreads, 0, cuda::stream()>>>(x, y, N, H, W, C, k, s, p, OH, OW);
  CUDA_CHECK_LAUNCH();
}

}  // namespace mdq::kernels

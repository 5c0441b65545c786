// Max pooling, global average pooling and NCHW unpacking of packed ±1 activations (launchers:
// kernels/binary_act.h). Memory-bound one-thread-per-output loops: the max pool reads k*k
// vectors of up to 4 words per output vector (up to 128 channels at once; single words left it
// at ~1.4 TB/s on an H200) with 32-bit index arithmetic (the callers check the sizes fit; 64-bit
// divisions made it 3x slower than its traffic), the average pool's lanes are 32 channels of one
// word (one broadcast load per pixel), the unpack writes coalesced f32 along the spatial
// dimension.
#include <cstdint>
#include <type_traits>

#include "kernels/backend.h"
#include "kernels/binary_act.h"
#include "kernels/cuda_common.h"
#include "kernels/grid_stride.cuh"

namespace mdq::kernels {
namespace {

// V consecutive words of one pixel, loaded and stored as one access (V divides Cw, so a
// pixel's vectors are aligned: it starts at a multiple of Cw words).
template <int V>
using Words = std::conditional_t<V == 4, uint4, std::conditional_t<V == 2, uint2, uint32_t>>;
__device__ __forceinline__ void or_into(uint32_t& a, uint32_t b) { a |= b; }
__device__ __forceinline__ void or_into(uint2& a, uint2 b) { a.x |= b.x, a.y |= b.y; }
__device__ __forceinline__ void or_into(uint4& a, uint4 b) { a.x |= b.x, a.y |= b.y, a.z |= b.z, a.w |= b.w; }

// y[n][oh][ow][w] = OR over the window's in-image taps of x[n][ih][iw][w]: the max of ±1
// values, bit by bit. Thread i: vector i of the output (V words, Cw / V vectors a pixel).
template <int V>
__global__ void maxpool_bits_kernel(const uint32_t* x, uint32_t* y, int N, int H, int W, int Cw, int k, int s, int p,
                                    int OH, int OW) {
  const int Cv = Cw / V, total = N * OH * OW * Cv;  // < 2^31 (packed::max_pool2d_bits checks)
  const Words<V>* xv = reinterpret_cast<const Words<V>*>(x);
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const int v = i % Cv, pixel = i / Cv, ow = pixel % OW, r = pixel / OW, oh = r % OH, n = r / OH;
    Words<V> acc{};
    for (int kh = 0; kh < k; ++kh) {
      const int ih = oh * s - p + kh;
      if (ih < 0 || ih >= H) continue;
      for (int kw = 0; kw < k; ++kw) {
        const int iw = ow * s - p + kw;
        if (iw < 0 || iw >= W) continue;
        or_into(acc, __ldg(xv + ((n * H + ih) * W + iw) * Cv + v));
      }
    }
    reinterpret_cast<Words<V>*>(y)[i] = acc;
  }
}

// Thread (n, c): count = the set bits of channel c over the S pixels; lanes 32 c's of one word.
// The pixel loop is unrolled so that a thread has 8 loads in flight, not one (its time is their
// latency: ImageNet ResNet-18's 7x7 map is 49 loads a thread).
__global__ void global_avg_pool_bits_kernel(const uint32_t* bits, float* out, int64_t N, int C, int64_t S, int Cw) {
  MDQ_GRID_STRIDE(i, N * C) {
    const int c = (int)(i % C);
    const uint32_t* word = bits + (i / C) * S * Cw + c / 32;
    int count = 0;
#pragma unroll 8
    for (int64_t s = 0; s < S; ++s) count += (__ldg(word + s * Cw) >> (c % 32)) & 1u;
    out[i] = (float)(2 * count - S) / (float)S;  // global_avg_pool_forward_kernel's acc / (float)hw
  }
}

__global__ void unpack_ncs_kernel(const uint32_t* bits, float* x, int64_t N, int C, int64_t S, int Cw) {
  MDQ_GRID_STRIDE(i, N * C * S) {
    const int64_t s = i % S, nc = i / S;
    const int c = (int)(nc % C);
    const int64_t n = nc / C;
    x[i] = (__ldg(bits + (n * S + s) * Cw + c / 32) >> (c % 32)) & 1u ? 1.f : -1.f;
  }
}

}  // namespace

void maxpool_bits_nhwc(const uint32_t* x, uint32_t* y, int N, int H, int W, int Cw, int k, int s, int p, int OH,
                       int OW) {
  const int64_t total = (int64_t)N * OH * OW * Cw;
  if (total == 0) return;
  // V words a thread where V divides Cw; then every vector is aligned, as x and y are (cudaMalloc
  // gives 256 bytes; the check covers a pointer into a block).
  const uintptr_t base = reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(y);
  const auto fits = [&](int V) { return Cw % V == 0 && base % (4 * V) == 0; };
  auto run = [&](auto kernel, int V) {
    kernel<<<cuda::grid_for(total / V), 256, 0, cuda::stream()>>>(x, y, N, H, W, Cw, k, s, p, OH, OW);
  };
  if (fits(4)) run(maxpool_bits_kernel<4>, 4);
  else if (fits(2)) run(maxpool_bits_kernel<2>, 2);
  else run(maxpool_bits_kernel<1>, 1);
  CUDA_CHECK_LAUNCH();
}

void global_avg_pool_bits(const uint32_t* bits, float* out, int64_t N, int C, int64_t S) {
  const int64_t total = N * C;
  if (total == 0) return;
  global_avg_pool_bits_kernel<<<cuda::grid_for(total), 256, 0, cuda::stream()>>>(bits, out, N, C, S, (C + 31) / 32);
  CUDA_CHECK_LAUNCH();
}

void unpack_signs_ncs_f32(const uint32_t* bits, float* x, int64_t N, int C, int64_t S) {
  const int64_t total = N * C * S;
  if (total == 0) return;
  unpack_ncs_kernel<<<cuda::grid_for(total), 256, 0, cuda::stream()>>>(bits, x, N, C, S, (C + 31) / 32);
  CUDA_CHECK_LAUNCH();
}

void register_binary_act(CudaBackend& b) {
  b.maxpool_bits_nhwc = maxpool_bits_nhwc;
  b.global_avg_pool_bits = global_avg_pool_bits;
  b.unpack_signs_ncs_f32 = unpack_signs_ncs_f32;
}

}  // namespace mdq::kernels

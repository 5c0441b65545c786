// What the W1A16 / W2A16 convolution paths share (kernels/w1a16_conv.cu: the mma.sync fast path
// and the entry point; kernels/w1a16_wgmma.cu: the sm_90a path; kernels/w1a16_general.cu: any
// channel count): the problem geometry, the bf16 patterns of ±1, and each path's launcher.
#pragma once
#include <cstdint>

#include "kernels/conv_shape.h"
#include "kernels/cuda_common.h"
#include "kernels/w1a16_conv.h"

namespace mdq::kernels::w1a16 {

// bf16 bit patterns of +1, -1.
constexpr uint32_t kPlus = 0x3F80u, kMinus = 0xBF80u;

// Two registers of bf16 pairs from packed sign bits, for an mma fragment (m16n8k16's B, wgmma's
// register A): bits 0, 1 of m give k = 2t, 2t+1 (r0) and bits 8, 9 give k = 2t+8, 2t+9 (r1), bit
// set = +1. m * (2^15 + 2^30) moves bit 0 to 15 and bit 1 to 31, m * (2^7 + 2^22) bits 8, 9 to
// 15, 31 (the shifted copies land on distinct bits, so nothing carries), then XOR with the
// pattern (-1, -1) clears the sign of each +1.
__device__ __forceinline__ void expand_signs(uint32_t m, uint32_t& r0, uint32_t& r1) {
  r0 = ((m * 0x40008000u) & 0x80008000u) ^ 0xBF80BF80u;
  r1 = ((m * 0x00400080u) & 0x80008000u) ^ 0xBF80BF80u;
}
// Ternary: z (the nonzero plane, masked alike) spread the same way, bit 15 of each half widened
// to bits 7..15, which cover every set bit of ±1 in bf16: a 0 weight becomes +0.
__device__ __forceinline__ void mask_zeros(uint32_t z, uint32_t& r0, uint32_t& r1) {
  r0 &= (((z * 0x40008000u) >> 8) & 0x00800080u) * 0x1FFu;
  r1 &= (((z * 0x00400080u) >> 8) & 0x00800080u) * 0x1FFu;
}

struct Geometry : ConvShape {  // Ktot = T*Cw words per output channel
  int CB;                       // fast path: 64-channel blocks per tap
  long long M;
};

// A row-table entry of the implicit GEMM's output pixel m: {pixel index of its (0, 0) tap, ih0,
// iw0}; past M an ih0 that no tap brings into range.
__device__ __forceinline__ int4 pixel_row(const Geometry& g, long long m) {
  int4 v = make_int4(0, -(1 << 28), 0, 0);
  if (m < g.M) {
    const int ohw = g.OH * g.OW;
    const int n = static_cast<int>(m / ohw), rem = static_cast<int>(m - static_cast<long long>(n) * ohw);
    const int oh = rem / g.OW, ow = rem - oh * g.OW;
    v.y = oh * g.stride - g.pad;
    v.z = ow * g.stride - g.pad;
    v.x = (n * g.H + v.y) * g.W + v.z;
  }
  return v;
}

// Opts a launcher's kernel in to `bytes` of dynamic shared memory (above 48 KB needs it) and to
// the largest shared-memory carveout; each launcher calls it once, from a static of its own.
template <class Kernel>
bool opt_in_shared_memory(Kernel kernel, int bytes) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                  cudaSharedmemCarveoutMaxShared));
  return true;
}

// Any C (e.g. 3 or 130): k-tile = one packed word, weights expanded in shared memory.
template <bool TERNARY>
void launch_general_path(const W1A16ConvArgs& a, const Geometry& g);

// sm_90a (kernels/w1a16_wgmma.cu): launches and returns true where it applies -- a build with
// sm_90a code on a compute capability 9.0 GPU, C % 8 == 0, 16-byte aligned activations, and not
// MDQ_W1A16_KERNEL=mma in the environment (the A/B switch to the mma.sync kernel).
bool conv2d_wgmma(const W1A16ConvArgs& a, const Geometry& g);

}  // namespace mdq::kernels::w1a16

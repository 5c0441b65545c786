// Bit packing on the GPU: one warp per 32-bit word, __ballot_sync turns 32 lane signs into the
// word (bit = lane = channel % 32), so packing costs one coalesced read of the input.
#include <cuda_bf16.h>

#include "kernels/backend.h"
#include "kernels/bitpack.h"
#include "kernels/cuda_common.h"

namespace mdq::kernels {
namespace {

constexpr int kBlock = 256;

// Grid-stride over words; every lane of a warp sees the same word, so the loop and the ballot
// stay warp-uniform (the element count is a multiple of 32 by construction).
template <class Load>
__global__ void pack_pc_kernel(Load load, uint32_t* bits, int64_t P, int C, int Cw) {
  const int lane = threadIdx.x & 31;
  const int64_t words = P * Cw;
  const int64_t warp0 = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
  const int64_t nwarps = ((int64_t)gridDim.x * blockDim.x) >> 5;
  for (int64_t w = warp0; w < words; w += nwarps) {
    const int64_t p = w / Cw;
    const int c = (int)(w % Cw) * 32 + lane;
    const bool bit = c < C && load(p, c);
    const uint32_t word = __ballot_sync(0xffffffffu, bit);
    if (lane == 0) bits[w] = word;
  }
}

struct LoadF32 {
  const float* x; int C;
  __device__ bool operator()(int64_t p, int c) const { return x[p * C + c] >= 0.f; }
};
struct LoadBF16 {
  const uint16_t* x; int C;
  __device__ bool operator()(int64_t p, int c) const { return (x[p * C + c] & 0x8000u) == 0 || (x[p * C + c] & 0x7fffu) == 0; }
};
// NCHW: p = n*S + s; element (n, c, s).
struct LoadNCS {
  const float* x; int C; int64_t S;
  __device__ bool operator()(int64_t p, int c) const {
    const int64_t n = p / S, s = p % S;
    return x[(n * C + c) * S + s] >= 0.f;
  }
};
struct LoadTernarySign {
  const float* x; int C;
  __device__ bool operator()(int64_t p, int c) const { return x[p * C + c] > 0.f; }
};
struct LoadTernaryNonzero {
  const float* x; int C;
  __device__ bool operator()(int64_t p, int c) const { return x[p * C + c] != 0.f; }
};

template <class Load>
void launch_pack(Load load, uint32_t* bits, int64_t P, int C) {
  const int Cw = (C + 31) / 32;
  if (P * Cw == 0) return;
  pack_pc_kernel<<<cuda::grid_for(P * Cw * 32, kBlock), kBlock, 0, cuda::stream()>>>(load, bits, P, C, Cw);
  CUDA_CHECK_LAUNCH();
}

__global__ void unpack_kernel(const uint32_t* bits, float* x, int64_t P, int C, int Cw) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < P * C; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t p = i / C;
    const int c = (int)(i % C);
    x[i] = (bits[p * Cw + c / 32] >> (c % 32)) & 1u ? 1.f : -1.f;
  }
}

__global__ void row_popc_kernel(const uint32_t* bits, int32_t* out, int64_t P, int Cw) {
  for (int64_t p = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; p < P; p += (int64_t)gridDim.x * blockDim.x) {
    int s = 0;
    for (int k = 0; k < Cw; ++k) s += __popc(bits[p * Cw + k]);
    out[p] = s;
  }
}

__global__ void f32_to_bf16_kernel(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = __bfloat16_as_ushort(__float2bfloat16_rn(x[i]));
}

__global__ void bf16_to_f32_kernel(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = __bfloat162float(__ushort_as_bfloat16(x[i]));
}

}  // namespace

void pack_signs_pc_f32(const float* x, uint32_t* bits, int64_t P, int C) { launch_pack(LoadF32{x, C}, bits, P, C); }
void pack_signs_pc_bf16(const uint16_t* x, uint32_t* bits, int64_t P, int C) { launch_pack(LoadBF16{x, C}, bits, P, C); }
void pack_signs_ncs_f32(const float* x, uint32_t* bits, int64_t N, int C, int64_t S) {
  launch_pack(LoadNCS{x, C, S}, bits, N * S, C);
}
void pack_ternary_pc_f32(const float* x, uint32_t* sign, uint32_t* nonzero, int64_t P, int C) {
  launch_pack(LoadTernarySign{x, C}, sign, P, C);
  launch_pack(LoadTernaryNonzero{x, C}, nonzero, P, C);
}

void unpack_signs_pc_f32(const uint32_t* bits, float* x, int64_t P, int C) {
  if (P * C == 0) return;
  unpack_kernel<<<cuda::grid_for(P * C), kBlock, 0, cuda::stream()>>>(bits, x, P, C, (C + 31) / 32);
  CUDA_CHECK_LAUNCH();
}

void row_popc(const uint32_t* bits, int32_t* out, int64_t P, int Cw) {
  if (P == 0) return;
  row_popc_kernel<<<cuda::grid_for(P), kBlock, 0, cuda::stream()>>>(bits, out, P, Cw);
  CUDA_CHECK_LAUNCH();
}

void f32_to_bf16(const float* x, uint16_t* y, int64_t n) {
  if (n == 0) return;
  f32_to_bf16_kernel<<<cuda::grid_for(n), kBlock, 0, cuda::stream()>>>(x, y, n);
  CUDA_CHECK_LAUNCH();
}
void bf16_to_f32(const uint16_t* x, float* y, int64_t n) {
  if (n == 0) return;
  bf16_to_f32_kernel<<<cuda::grid_for(n), kBlock, 0, cuda::stream()>>>(x, y, n);
  CUDA_CHECK_LAUNCH();
}

void register_bitpack(CudaBackend& b) {
  b.pack_signs_pc_f32 = pack_signs_pc_f32;
  b.pack_signs_pc_bf16 = pack_signs_pc_bf16;
  b.pack_signs_ncs_f32 = pack_signs_ncs_f32;
  b.pack_ternary_pc_f32 = pack_ternary_pc_f32;
  b.unpack_signs_pc_f32 = unpack_signs_pc_f32;
  b.row_popc = row_popc;
  b.f32_to_bf16 = f32_to_bf16;
  b.bf16_to_f32 = bf16_to_f32;
}

}  // namespace mdq::kernels

// The general path of the W1A16 / W2A16 convolution (kernels/w1a16_conv.cu has the fast path and
// the entry point): any channel count C (the stem's 3, or C not a multiple of 8). k-tile = one
// packed weight word (32 channels of one tap), scalar or 16-byte activation loads, two stages,
// the k-tile's weights expanded to ±1 (or {-1, 0, 1}) bf16 in shared memory by the whole CTA.
// Fragment layouts: see w1a16_conv.cu.
#include <cuda_bf16.h>

#include "kernels/cuda_common.h"
#include "kernels/ptx.cuh"
#include "kernels/w1a16_internal.cuh"

namespace mdq::kernels::w1a16 {
namespace {

using ptx::cp_async16_zfill;
using ptx::cp_async_commit;
using ptx::cp_async_wait;
using ptx::mma_bf16;

__device__ __forceinline__ void cp_async_wait_one() { cp_async_wait<1>(); }

template <int BM, int BN, int WM, int WN, bool VEC8, bool TERNARY>
__global__ void __launch_bounds__((BM / WM) * (BN / WN) * 32)
    w1a16_general_kernel(W1A16ConvArgs args, Geometry g) {
  constexpr int WARPS_N = BN / WN;
  constexpr int THREADS = (BM / WM) * WARPS_N * 32;
  constexpr int MT = WM / 16, NT = WN / 8;
  constexpr int LDS = 16 + 4;                 // 32 bf16 = 16 words per row, +4 against bank conflicts
  constexpr int CPR = VEC8 ? 4 : 32;          // A chunks per row: 16-byte cp.async or single bf16
  constexpr int ROW_STEP = THREADS / CPR;
  constexpr int A_ITERS = BM / ROW_STEP;
  constexpr int B_ROWS_PER_PASS = THREADS / 2;  // two threads expand one output channel's word
  constexpr int B_ITERS = (BN + B_ROWS_PER_PASS - 1) / B_ROWS_PER_PASS;
  static_assert(BM % ROW_STEP == 0, "tile shape");

  __shared__ __align__(16) uint32_t As[2][BM * LDS];
  __shared__ __align__(16) uint32_t Bs[2][BN * LDS];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int gq = lane >> 2, tq = lane & 3;
  const long long m0 = (long long)blockIdx.x * BM;
  const int n0 = blockIdx.y * BN;
  const int cc = tid % CPR;

  int a_nh[A_ITERS], a_ih0[A_ITERS], a_iw0[A_ITERS];
#pragma unroll
  for (int i = 0; i < A_ITERS; ++i) {
    const long long m = m0 + tid / CPR + i * ROW_STEP;
    if (m < g.M) {
      const int n = (int)(m / ((long long)g.OH * g.OW));
      const int r = (int)(m % ((long long)g.OH * g.OW));
      a_nh[i] = n * g.H;
      a_ih0[i] = (r / g.OW) * g.stride - g.pad;
      a_iw0[i] = (r % g.OW) * g.stride - g.pad;
    } else {
      a_nh[i] = 0;
      a_ih0[i] = -(1 << 28);
      a_iw0[i] = 0;
    }
  }

  auto load_a = [&](int stage, int kt) {
    const int tap = kt / g.Cw, cw = kt - tap * g.Cw;
    const int kh = tap / g.KW, kw = tap - kh * g.KW;
    const int c = cw * 32 + cc * (VEC8 ? 8 : 1);  // first channel of this thread's chunk
#pragma unroll
    for (int i = 0; i < A_ITERS; ++i) {
      const int row = tid / CPR + i * ROW_STEP;
      const int ih = a_ih0[i] + kh, iw = a_iw0[i] + kw;
      const bool valid = c < g.C && ih >= 0 && ih < g.H && iw >= 0 && iw < g.W;
      const long long off = ((long long)(a_nh[i] + ih) * g.W + iw) * g.C + c;
      if constexpr (VEC8) {
        cp_async16_zfill(&As[stage][row * LDS + cc * 4], valid ? args.x + off : args.x, valid);
      } else {
        reinterpret_cast<uint16_t*>(&As[stage][row * LDS])[cc] = valid ? args.x[off] : (uint16_t)0;
      }
    }
  };
  // Weight words of k-tile kt for this thread's channels (registers), then expanded into smem.
  auto load_w = [&](int kt, uint32_t (&sg)[B_ITERS], uint32_t (&nz)[B_ITERS]) {
#pragma unroll
    for (int i = 0; i < B_ITERS; ++i) {
      const int row = tid / 2 + i * B_ROWS_PER_PASS;
      const int o = n0 + row;
      const bool valid = row < BN && o < g.O;
      sg[i] = valid ? args.sign[(long long)o * g.Ktot + kt] : 0u;
      nz[i] = TERNARY ? (valid ? args.nonzero[(long long)o * g.Ktot + kt] : 0u) : (valid ? ~0u : 0u);
    }
  };
  auto store_w = [&](int stage, const uint32_t (&sg)[B_ITERS], const uint32_t (&nz)[B_ITERS]) {
    const int half = tid & 1;  // bits [16 half, 16 half + 16)
#pragma unroll
    for (int i = 0; i < B_ITERS; ++i) {
      const int row = tid / 2 + i * B_ROWS_PER_PASS;
      if (row >= BN) continue;
      const uint32_t s = sg[i] >> (16 * half), z = nz[i] >> (16 * half);
      uint32_t words[8];
#pragma unroll
      for (int q = 0; q < 8; ++q) {
        const uint32_t lo = (z >> (2 * q)) & 1u ? ((s >> (2 * q)) & 1u ? kPlus : kMinus) : 0u;
        const uint32_t hi = (z >> (2 * q + 1)) & 1u ? ((s >> (2 * q + 1)) & 1u ? kPlus : kMinus) : 0u;
        words[q] = lo | (hi << 16);
      }
      uint4* dst = reinterpret_cast<uint4*>(&Bs[stage][row * LDS + 8 * half]);
      dst[0] = make_uint4(words[0], words[1], words[2], words[3]);
      dst[1] = make_uint4(words[4], words[5], words[6], words[7]);
    }
  };

  float acc[MT][NT][4] = {};

  const int rb = (warp / WARPS_N) * WM, cb = (warp % WARPS_N) * WN;
  const int nk = g.Ktot;
  uint32_t sg[B_ITERS], nz[B_ITERS];
  load_a(0, 0);
  cp_async_commit();
  load_w(0, sg, nz);
  store_w(0, sg, nz);
  for (int kt = 0; kt < nk; ++kt) {
    const bool more = kt + 1 < nk;
    if (more) {
      load_a((kt + 1) & 1, kt + 1);
      load_w(kt + 1, sg, nz);  // in flight while this tile computes
    }
    cp_async_commit();
    cp_async_wait_one();
    __syncthreads();
    const uint32_t* as = As[kt & 1];
    const uint32_t* bs = Bs[kt & 1];
#pragma unroll
    for (int s = 0; s < 2; ++s) {
      uint32_t a[MT][4], b[NT][2];
#pragma unroll
      for (int i = 0; i < MT; ++i) {
        const int r = rb + 16 * i + gq;
        a[i][0] = as[r * LDS + 8 * s + tq];
        a[i][1] = as[(r + 8) * LDS + 8 * s + tq];
        a[i][2] = as[r * LDS + 8 * s + 4 + tq];
        a[i][3] = as[(r + 8) * LDS + 8 * s + 4 + tq];
      }
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const int c = cb + 8 * j + gq;
        b[j][0] = bs[c * LDS + 8 * s + tq];
        b[j][1] = bs[c * LDS + 8 * s + 4 + tq];
      }
#pragma unroll
      for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j) mma_bf16(acc[i][j], a[i], b[j]);
    }
    if (more) store_w((kt + 1) & 1, sg, nz);  // that buffer was last read before the previous barrier
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const long long m = m0 + rb + 16 * i + gq + 8 * h;
      if (m >= g.M) continue;
#pragma unroll
      for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int o = n0 + cb + 8 * j + 2 * tq + e;
          if (o >= g.O) continue;
          float y = acc[i][j][2 * h + e] * (args.scale ? args.scale[o] : 1.f) + (args.shift ? args.shift[o] : 0.f);
          if (args.relu) y = fmaxf(y, 0.f);
          const long long idx = m * g.O + o;
          if (args.out_bf16)
            static_cast<uint16_t*>(args.out)[idx] = __bfloat16_as_ushort(__float2bfloat16_rn(y));
          else
            static_cast<float*>(args.out)[idx] = y;
        }
    }
}

template <int BM, int BN, int WM, int WN, bool TERNARY>
void launch_general(const W1A16ConvArgs& a, const Geometry& g) {
  constexpr int THREADS = (BM / WM) * (BN / WN) * 32;
  const dim3 grid((unsigned)((g.M + BM - 1) / BM), (unsigned)((g.O + BN - 1) / BN));
  w1a16_general_kernel<BM, BN, WM, WN, false, TERNARY><<<grid, THREADS, 0, cuda::stream()>>>(a, g);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

template <bool TERNARY>
void launch_general_path(const W1A16ConvArgs& a, const Geometry& g) {
  if (g.O <= 64)
    launch_general<128, 64, 32, 32, TERNARY>(a, g);
  else
    launch_general<128, 128, 64, 32, TERNARY>(a, g);
}
template void launch_general_path<false>(const W1A16ConvArgs&, const Geometry&);
template void launch_general_path<true>(const W1A16ConvArgs&, const Geometry&);

}  // namespace mdq::kernels::w1a16

// Convolution with packed binary (W1A16) or ternary (W2A16) weights and bf16 activations
// (DESIGN.md E12, last bullet): weights stay packed (32x smaller than fp32) and become ±1 or
// {-1, 0, 1} bf16 only in front of mma.sync m16n8k16 bf16 with f32 accumulation. Implicit GEMM
// over NHWC activations: M = N*OH*OW pixels, N_gemm = O channels, K = taps x channels.
//
// On sm_90a (compute capability 9.0) kernels/w1a16_wgmma.cu takes every C % 8 == 0 shape first
// (1.5-2.7x this kernel on ResNet-18's layers, benchmarks/results/2026-12-03-h200-session24.txt);
// MDQ_W1A16_KERNEL=mma keeps this one, the portable path for other GPUs.
// Fast path (C % 8 == 0, every ResNet layer past the stem): k-tile = 64 channels of one tap
// (two packed words; channels past C read as 0 activations, so padded weight bits add 0),
// STAGES-deep cp.async pipeline in dynamic shared memory with one barrier per k-tile, A tile
// rows of 128 B with the 16-byte chunks XOR-swizzled by (row & 7) so that both the cp.async
// stores and the ldmatrix.x4 fragment loads are free of bank conflicts. The weights are NOT
// expanded into shared memory: each lane reads its column's packed word and builds the two B
// registers it needs with an AND, an IMAD and a LOP3 each (see expand_signs), and every B
// fragment is reused across the warp's MT m16 tiles. Warp tiles are 64x64 (32x32 for small
// problems); the launcher picks the CTA shape from M and O.
// General path (any C, e.g. 3): kernels/w1a16_general.cu.
//
// Fragment layout of mma.m16n8k16 .bf16 (PTX ISA, "Matrix Fragments for mma.m16n8k16 with
// floating point type"), lane = 4 g + t, lower-indexed element in the low half of a register:
//   A (16 x 16, row): a0 = row g, k 2t..2t+1; a1 = row g+8; a2 = row g, k 2t+8..; a3 = row g+8, k 2t+8..
//   B (16 x 8, col):  b0 = column g, k 2t..2t+1; b1 = column g, k 2t+8..
//   C (16 x 8 f32):   c0, c1 = row g, columns 2t, 2t+1; c2, c3 = row g+8.
#include <cuda_bf16.h>

#include "kernels/backend.h"
#include "kernels/cuda_common.h"
#include "kernels/ptx.cuh"
#include "kernels/w1a16_internal.cuh"

namespace mdq::kernels {
namespace w1a16 {
namespace {

using ptx::cp_async16_zfill;
using ptx::cp_async4_zfill;
using ptx::cp_async_commit;
using ptx::cp_async_wait;
using ptx::ldmatrix_x4;
using ptx::mma_bf16;
using ptx::smem_u32;

// ---- Fast path -------------------------------------------------------------------------------

// B registers of one k16 step for one column: m = (word >> (16 (kk & 1) + 2t)) & 0x0303 holds
// the sign bits of k = 2t, 2t+1 (b0) at bits 0, 1 and of k = 2t+8, 2t+9 (b1) at bits 8, 9
// (expand_signs, mask_zeros: kernels/w1a16_internal.cuh).

template <int WARPS_M, int WARPS_N, int MT, int NT, int STAGES, bool TERNARY>
struct FastConfig {
  static constexpr int BM = WARPS_M * MT * 16, BN = WARPS_N * NT * 8;
  static constexpr int THREADS = WARPS_M * WARPS_N * 32;
  static constexpr int A_BYTES = BM * 128;                 // 64 bf16 per pixel row
  static constexpr int B_WORDS = (TERNARY ? 2 : 1) * BN * 2;  // 2 words per column, per plane
  static constexpr int STAGE_BYTES = A_BYTES + B_WORDS * 4;
  static constexpr int SMEM = STAGES * STAGE_BYTES + BM * 16;  // + per-row geometry (int4)
  static_assert(STAGE_BYTES % 128 == 0, "stages keep the A tile 128-byte aligned");
  static_assert((BM * 8) % THREADS == 0, "whole 16-byte chunks per thread");
};

template <int WARPS_M, int WARPS_N, int MT, int NT, int STAGES, bool TERNARY>
__global__ void __launch_bounds__(WARPS_M * WARPS_N * 32, 2)
    w1a16_fast_kernel(W1A16ConvArgs args, Geometry g) {
  using Cfg = FastConfig<WARPS_M, WARPS_N, MT, NT, STAGES, TERNARY>;
  constexpr int BM = Cfg::BM, BN = Cfg::BN, THREADS = Cfg::THREADS;
  constexpr int ROW_STEP = THREADS / 8, A_ITERS = BM / ROW_STEP;
  extern __shared__ __align__(128) unsigned char smem[];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int gq = lane >> 2, tq = lane & 3;
  const int wm = warp / WARPS_N, wn = warp % WARPS_N;
  const long long m0 = (long long)blockIdx.x * BM;
  const int n0 = blockIdx.y * BN;

  // The tile's row table (pixel_row).
  int4* rows = reinterpret_cast<int4*>(smem + STAGES * Cfg::STAGE_BYTES);
  for (int r = tid; r < BM; r += THREADS) rows[r] = pixel_row(g, m0 + r);
  __syncthreads();

  // Loads the next k-tile (tap (lkh, lkw), channel block lcb) into a stage, then advances.
  const int cc = tid & 7;  // this thread's 16-byte chunk (8 channels) of each of its rows
  int lkh = 0, lkw = 0, lcb = 0;
  auto load_tile = [&](int stage) {
    unsigned char* st = smem + stage * Cfg::STAGE_BYTES;
    const int c = lcb * 64 + cc * 8;
    const bool c_ok = c < g.C;
    const int dpix = lkh * g.W + lkw;
#pragma unroll
    for (int i = 0; i < A_ITERS; ++i) {
      const int r = tid / 8 + i * ROW_STEP;
      const int4 rv = rows[r];
      const int ih = rv.y + lkh, iw = rv.z + lkw;
      const bool ok = c_ok && (unsigned)ih < (unsigned)g.H && (unsigned)iw < (unsigned)g.W;
      const uint16_t* src = ok ? args.x + ((long long)(rv.x + dpix) * g.C + c) : args.x;
      cp_async16_zfill(st + r * 128 + ((cc ^ (r & 7)) << 4), src, ok);
    }
    // Packed weights [plane][column][2 words], words past Cw (C % 64 != 0) read as 0.
    uint32_t* bs = reinterpret_cast<uint32_t*>(st + Cfg::A_BYTES);
    const int tap_word = (lkh * g.KW + lkw) * g.Cw + 2 * lcb;
#pragma unroll
    for (int idx = tid; idx < Cfg::B_WORDS; idx += THREADS) {
      const int plane = idx / (2 * BN), k = idx % (2 * BN);
      const int o = n0 + (k >> 1), w = 2 * lcb + (k & 1);
      const bool ok = o < g.O && w < g.Cw;
      const uint32_t* base = plane ? args.nonzero : args.sign;
      cp_async4_zfill(bs + idx, ok ? base + (long long)o * g.Ktot + tap_word + (k & 1) : base, ok);
    }
    if (++lcb == g.CB) {
      lcb = 0;
      if (++lkw == g.KW) {
        lkw = 0;
        ++lkh;
      }
    }
  };

  float acc[MT][NT][4] = {};

  // ldmatrix.x4 addresses: lanes 0-15 give rows 0-15 of chunk 2kk (a0, a1), lanes 16-31 the same
  // rows of chunk 2kk+1 (a2, a3); tile rows start at multiples of 16, so row & 7 = lane & 7.
  const uint32_t a_lane = smem_u32(smem) + (wm * MT * 16 + (lane & 15)) * 128;
  const int a_hi = lane >> 4, a_xor = lane & 7;
  const int b_col = (wn * NT * 8 + gq) * 2;

  const int nk = g.T * g.CB;
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < nk) load_tile(s);
    cp_async_commit();
  }
  int rd = 0, wr = STAGES - 1;
  for (int kt = 0; kt < nk; ++kt) {
    cp_async_wait<STAGES - 2>();  // k-tile kt has landed (this thread's copies) ...
    __syncthreads();              // ... everyone's, and k-tile kt-1's stage (= wr) is free
    if (kt + STAGES - 1 < nk) load_tile(wr);
    cp_async_commit();
    wr = wr + 1 == STAGES ? 0 : wr + 1;

    const uint32_t a_st = a_lane + rd * Cfg::STAGE_BYTES;
    const uint32_t* bst = reinterpret_cast<const uint32_t*>(smem + rd * Cfg::STAGE_BYTES + Cfg::A_BYTES) + b_col;
    rd = rd + 1 == STAGES ? 0 : rd + 1;
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      uint32_t a[MT][4];
      const uint32_t a_k = a_st + ((((2 * kk) | a_hi) ^ a_xor) << 4);
#pragma unroll
      for (int i = 0; i < MT; ++i) ldmatrix_x4(a[i], a_k + i * 16 * 128);
      const int shift = 16 * (kk & 1) + 2 * tq;
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        uint32_t b[2];
        expand_signs((bst[16 * j + (kk >> 1)] >> shift) & 0x0303u, b[0], b[1]);
        if constexpr (TERNARY) mask_zeros((bst[2 * BN + 16 * j + (kk >> 1)] >> shift) & 0x0303u, b[0], b[1]);
#pragma unroll
        for (int i = 0; i < MT; ++i) mma_bf16(acc[i][j], a[i], b);
      }
    }
  }

  // Epilogue: per-channel affine, ReLU, f32 or bf16; column pairs (2t, 2t+1) as one store when O
  // is even (then the pair's address is aligned).
  const bool pairs = (g.O & 1) == 0;
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    const int o = n0 + wn * NT * 8 + 8 * j + 2 * tq;
    if (o >= g.O) continue;
    const bool has1 = o + 1 < g.O;
    const float s0 = args.scale ? args.scale[o] : 1.f, h0 = args.shift ? args.shift[o] : 0.f;
    const float s1 = has1 && args.scale ? args.scale[o + 1] : 1.f, h1 = has1 && args.shift ? args.shift[o + 1] : 0.f;
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const long long m = m0 + wm * MT * 16 + 16 * i + gq + 8 * h;
        if (m >= g.M) continue;
        float y0 = acc[i][j][2 * h] * s0 + h0, y1 = acc[i][j][2 * h + 1] * s1 + h1;
        if (args.relu) {
          y0 = fmaxf(y0, 0.f);
          y1 = fmaxf(y1, 0.f);
        }
        const long long idx = m * g.O + o;
        if (args.out_bf16) {
          uint16_t* out = static_cast<uint16_t*>(args.out);
          const uint16_t q0 = __bfloat16_as_ushort(__float2bfloat16_rn(y0));
          const uint16_t q1 = __bfloat16_as_ushort(__float2bfloat16_rn(y1));
          if (pairs) {
            *reinterpret_cast<uint32_t*>(out + idx) = (uint32_t)q0 | ((uint32_t)q1 << 16);
          } else {
            out[idx] = q0;
            if (has1) out[idx + 1] = q1;
          }
        } else {
          float* out = static_cast<float*>(args.out);
          if (pairs) {
            *reinterpret_cast<float2*>(out + idx) = make_float2(y0, y1);
          } else {
            out[idx] = y0;
            if (has1) out[idx + 1] = y1;
          }
        }
      }
  }
}

template <int WARPS_M, int WARPS_N, int MT, int NT, int STAGES, bool TERNARY>
void launch_fast(const W1A16ConvArgs& a, const Geometry& g) {
  using Cfg = FastConfig<WARPS_M, WARPS_N, MT, NT, STAGES, TERNARY>;
  auto kernel = w1a16_fast_kernel<WARPS_M, WARPS_N, MT, NT, STAGES, TERNARY>;
  static const bool configured = opt_in_shared_memory(kernel, Cfg::SMEM);
  (void)configured;
  const dim3 grid((unsigned)((g.M + Cfg::BM - 1) / Cfg::BM), (unsigned)((g.O + Cfg::BN - 1) / Cfg::BN));
  kernel<<<grid, Cfg::THREADS, Cfg::SMEM, cuda::stream()>>>(a, g);
  CUDA_CHECK_LAUNCH();
}

// Tile shape by problem size: 64x64 warp tiles (the B expansion and the A fragments each reused
// 4-8 times) when the big CTA shapes still give every SM a CTA, else 64x64 CTAs of 32x32 warps.
//   O <= 64: 256 x 64 CTA, 4 warps of 64x64, 3 stages (99 KB, two CTAs per SM)
//   O >  64: 128 x 128 CTA, 4 warps of 64x64, 4 stages (69 KB binary, 73 KB ternary)
//   small:   64 x 64 CTA, 4 warps of 32x32, 4 stages (35 KB)
template <bool TERNARY>
void dispatch_fast(const W1A16ConvArgs& a, const Geometry& g) {
  auto ctas = [&](int bm, int bn) { return ((g.M + bm - 1) / bm) * (long long)((g.O + bn - 1) / bn); };
  const long long sms = cuda::sm_count();
  if (g.O <= 64 && ctas(256, 64) >= sms)
    launch_fast<4, 1, 4, 8, 3, TERNARY>(a, g);
  else if (g.O > 64 && ctas(128, 128) >= sms)
    launch_fast<2, 2, 4, 8, 4, TERNARY>(a, g);
  else
    launch_fast<2, 2, 2, 4, 4, TERNARY>(a, g);
}

template <bool TERNARY>
void dispatch(const W1A16ConvArgs& a, const Geometry& g) {
  if (conv2d_wgmma(a, g)) return;
  // The fast path keeps pixel indices in int (its row table), hence the size bound.
  if (g.C % 8 == 0 && (long long)g.N * g.H * g.W < (1LL << 31) - (1LL << 20))
    dispatch_fast<TERNARY>(a, g);
  else
    launch_general_path<TERNARY>(a, g);
}

}  // namespace
}  // namespace w1a16

void w1a16_conv2d(const W1A16ConvArgs& a) {
  const w1a16::Geometry g = w1a16::make_geometry(a);
  if (g.M <= 0 || g.O <= 0) return;
  if (a.nonzero)
    w1a16::dispatch<true>(a, g);
  else
    w1a16::dispatch<false>(a, g);
}

void register_w1a16_conv(CudaBackend& b) {
  b.w1a16_conv2d = w1a16_conv2d;
}

}  // namespace mdq::kernels

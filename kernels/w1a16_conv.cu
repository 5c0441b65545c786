// Convolution with packed binary (W1A16) or ternary (W2A16) weights and bf16 activations
// (DESIGN.md E12, last bullet): weights stay packed (32x smaller than fp32) and become ±1 or
// {-1, 0, 1} bf16 only in front of mma.sync m16n8k16 bf16 with f32 accumulation. Implicit GEMM
// over NHWC activations: M = N*OH*OW pixels, N_gemm = O channels, K = taps x channels.
//
// Fast path (C % 8 == 0, every ResNet layer past the stem): k-tile = 64 channels of one tap
// (two packed words; channels past C read as 0 activations, so padded weight bits add 0),
// STAGES-deep cp.async pipeline in dynamic shared memory with one barrier per k-tile, A tile
// rows of 128 B with the 16-byte chunks XOR-swizzled by (row & 7) so that both the cp.async
// stores and the ldmatrix.x4 fragment loads are free of bank conflicts. The weights are NOT
// expanded into shared memory: each lane reads its column's packed word and builds the two B
// registers it needs with an AND, an IMAD and a LOP3 each (see expand_pair), and every B
// fragment is reused across the warp's MT m16 tiles. Warp tiles are 64x64 (32x32 for small
// problems); the launcher picks the CTA shape from M and O.
// General path (any C, e.g. 3): k-tile = one packed word (32 channels), scalar activation
// loads, weights expanded into shared memory.
//
// Fragment layout of mma.m16n8k16 .bf16 (PTX ISA, "Matrix Fragments for mma.m16n8k16 with
// floating point type"), lane = 4 g + t, lower-indexed element in the low half of a register:
//   A (16 x 16, row): a0 = row g, k 2t..2t+1; a1 = row g+8; a2 = row g, k 2t+8..; a3 = row g+8, k 2t+8..
//   B (16 x 8, col):  b0 = column g, k 2t..2t+1; b1 = column g, k 2t+8..
//   C (16 x 8 f32):   c0, c1 = row g, columns 2t, 2t+1; c2, c3 = row g+8.
#include <cuda_bf16.h>

#include "engine/cuda_context.h"
#include "kernels/binary_conv.h"  // conv_out_size
#include "kernels/w1a16_conv.h"

namespace mdq::kernels {
namespace {

__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t smem_addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr));
}

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void cp_async16_zfill(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem),
               "r"(valid ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_async4_zfill(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem),
               "r"(valid ? 4 : 0) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_one() { asm volatile("cp.async.wait_group 1;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

// bf16 bit patterns of +1, -1.
constexpr uint32_t kPlus = 0x3F80u, kMinus = 0xBF80u;

struct Geometry {
  int N, H, W, C, Cw, O, KH, KW, stride, pad, OH, OW, T, Ktot;  // Ktot = T*Cw words per output channel
  int CB;                                                       // fast path: 64-channel blocks per tap
  long long M;
};

// ---- Fast path -------------------------------------------------------------------------------

// B registers of one k16 step for one column. m = (word >> (16 (kk & 1) + 2t)) & 0x0303 holds the
// sign bits of k = 2t, 2t+1 (b0) at bits 0, 1 and of k = 2t+8, 2t+9 (b1) at bits 8, 9.
// m * (2^15 + 2^30) moves bit 0 to 15 and bit 1 to 31, m * (2^7 + 2^22) bits 8, 9 to 15, 31; the
// shifted copies of m land on distinct bits, so the products carry nothing. XOR with the pattern
// (-1, -1) then clears the sign of each +1.
__device__ __forceinline__ void expand_signs(uint32_t m, uint32_t (&b)[2]) {
  b[0] = ((m * 0x40008000u) & 0x80008000u) ^ 0xBF80BF80u;
  b[1] = ((m * 0x00400080u) & 0x80008000u) ^ 0xBF80BF80u;
}
// Ternary: z (the nonzero plane, masked alike) spread the same way, bit 15 of each half moved to
// 7 and widened to bits 7..15, which cover every set bit of ±1 in bf16: a 0 weight becomes +0.
__device__ __forceinline__ void mask_zeros(uint32_t z, uint32_t (&b)[2]) {
  b[0] &= (((z * 0x40008000u) >> 8) & 0x00800080u) * 0x1FFu;
  b[1] &= (((z * 0x00400080u) >> 8) & 0x00800080u) * 0x1FFu;
}

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

  // Per tile row (output pixel): {pixel index of its (kh, kw) = (0, 0) tap, ih0, iw0}; rows past
  // M get an ih0 that no tap brings into range.
  int4* rows = reinterpret_cast<int4*>(smem + STAGES * Cfg::STAGE_BYTES);
  for (int r = tid; r < BM; r += THREADS) {
    const long long m = m0 + r;
    int4 v = make_int4(0, -(1 << 28), 0, 0);
    if (m < g.M) {
      const int ohw = g.OH * g.OW;
      const int n = (int)(m / ohw), rem = (int)(m - (long long)n * ohw);
      const int oh = rem / g.OW, ow = rem - oh * g.OW;
      v.y = oh * g.stride - g.pad;
      v.z = ow * g.stride - g.pad;
      v.x = (n * g.H + v.y) * g.W + v.z;
    }
    rows[r] = v;
  }
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
        expand_signs((bst[16 * j + (kk >> 1)] >> shift) & 0x0303u, b);
        if constexpr (TERNARY) mask_zeros((bst[2 * BN + 16 * j + (kk >> 1)] >> shift) & 0x0303u, b);
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

// ---- General path kernel: k-tile = one packed word, weights expanded in shared memory ----

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

template <int WARPS_M, int WARPS_N, int MT, int NT, int STAGES, bool TERNARY>
void launch_fast(const W1A16ConvArgs& a, const Geometry& g) {
  using Cfg = FastConfig<WARPS_M, WARPS_N, MT, NT, STAGES, TERNARY>;
  auto kernel = w1a16_fast_kernel<WARPS_M, WARPS_N, MT, NT, STAGES, TERNARY>;
  static const bool configured = [kernel] {  // > 48 KB of dynamic shared memory needs an opt-in
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::SMEM));
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                    cudaSharedmemCarveoutMaxShared));
    return true;
  }();
  (void)configured;
  const dim3 grid((unsigned)((g.M + Cfg::BM - 1) / Cfg::BM), (unsigned)((g.O + Cfg::BN - 1) / Cfg::BN));
  kernel<<<grid, Cfg::THREADS, Cfg::SMEM, cuda::stream()>>>(a, g);
  CUDA_CHECK_LAUNCH();
}

int sm_count() {
  static const int sms = [] {
    int dev = 0, count = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, dev));
    return count;
  }();
  return sms;
}

// Tile shape by problem size: 64x64 warp tiles (the B expansion and the A fragments each reused
// 4-8 times) when the big CTA shapes still give every SM a CTA, else 64x64 CTAs of 32x32 warps.
//   O <= 64: 256 x 64 CTA, 4 warps of 64x64, 3 stages (99 KB, two CTAs per SM)
//   O >  64: 128 x 128 CTA, 4 warps of 64x64, 4 stages (69 KB binary, 73 KB ternary)
//   small:   64 x 64 CTA, 4 warps of 32x32, 4 stages (35 KB)
template <bool TERNARY>
void dispatch_fast(const W1A16ConvArgs& a, const Geometry& g) {
  auto ctas = [&](int bm, int bn) { return ((g.M + bm - 1) / bm) * (long long)((g.O + bn - 1) / bn); };
  const long long sms = sm_count();
  if (g.O <= 64 && ctas(256, 64) >= sms)
    launch_fast<4, 1, 4, 8, 3, TERNARY>(a, g);
  else if (g.O > 64 && ctas(128, 128) >= sms)
    launch_fast<2, 2, 4, 8, 4, TERNARY>(a, g);
  else
    launch_fast<2, 2, 2, 4, 4, TERNARY>(a, g);
}

// ---- General path: any C ---------------------------------------------------------------------

template <int BM, int BN, int WM, int WN, bool TERNARY>
void launch_general(const W1A16ConvArgs& a, const Geometry& g) {
  constexpr int THREADS = (BM / WM) * (BN / WN) * 32;
  const dim3 grid((unsigned)((g.M + BM - 1) / BM), (unsigned)((g.O + BN - 1) / BN));
  w1a16_general_kernel<BM, BN, WM, WN, false, TERNARY><<<grid, THREADS, 0, cuda::stream()>>>(a, g);
  CUDA_CHECK_LAUNCH();
}

template <bool TERNARY>
void dispatch(const W1A16ConvArgs& a, const Geometry& g) {
  // The fast path keeps pixel indices in int (its row table), hence the size bound.
  if (g.C % 8 == 0 && (long long)g.N * g.H * g.W < (1LL << 31) - (1LL << 20))
    dispatch_fast<TERNARY>(a, g);
  else if (g.O <= 64)
    launch_general<128, 64, 32, 32, TERNARY>(a, g);
  else
    launch_general<128, 128, 64, 32, TERNARY>(a, g);
}

}  // namespace

void w1a16_conv2d(const W1A16ConvArgs& a) {
  Geometry g{};
  g.N = a.N; g.H = a.H; g.W = a.W; g.C = a.C; g.Cw = (a.C + 31) / 32; g.O = a.O;
  g.KH = a.KH; g.KW = a.KW; g.stride = a.stride; g.pad = a.pad;
  g.OH = conv_out_size(a.H, a.KH, a.stride, a.pad);
  g.OW = conv_out_size(a.W, a.KW, a.stride, a.pad);
  g.T = a.KH * a.KW;
  g.Ktot = g.T * g.Cw;
  g.CB = (a.C + 63) / 64;
  g.M = (long long)a.N * g.OH * g.OW;
  if (g.M <= 0 || g.O <= 0) return;
  if (a.nonzero)
    dispatch<true>(a, g);
  else
    dispatch<false>(a, g);
}

}  // namespace mdq::kernels

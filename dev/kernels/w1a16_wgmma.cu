// W1A16 / W2A16 convolution on Hopper's warpgroup MMA (sm_90a): the implicit GEMM of
// kernels/w1a16_conv.cu (M = N*OH*OW pixels, N_gemm = O channels, K = taps x channels, k-chunk =
// 64 channels of one tap) with `wgmma.mma_async m64nNk16 .bf16` and f32 accumulation, the weights
// expanded from their packed bits into ±1 (or {-1, 0, 1}) bf16 in shared memory once per CTA and
// k-chunk, as DESIGN.md E12's last bullet has it.
//
// Status (measured on an H200, benchmarks/results): correct (dev/tests/test_w1a16_wgmma_gpu.cpp),
// but at 0.21-0.27x cuDNN bf16 on ResNet-18's ImageNet layers it is slower than the mma.sync
// kernel (0.25-0.35x) except where M is small and K long (1.6x vs 1.2x on the 512-channel 4x4
// layer), so it lives in the workshop, off the main path. The tensor core is not the limit (this
// layout's m64n128k16 runs at 978 TFLOPS in bench_packed_conv's probe), nor were, in turn,
// wgmma serialization (C7515, C7518), a conflicting byte table, the fence, the pipeline depth,
// cp.async's shared-memory wavefronts, or the per-CTA pipeline fill (CTAs are now persistent),
// each fixed or ruled out below without moving the total; ncu still shows under one eligible
// warp per scheduler. What limits it is open; the next thing to try is producer/consumer warp
// specialisation with mbarriers and TMA im2col loads.
//
// The design, from the mma.sync kernel's limits (9.2 instructions per MMA building B fragments
// per warp in registers, 12.5% occupancy; mma.sync bf16 issues at about half of wgmma's rate):
//   - a CTA is two warpgroups, a 128-row x BN-channel tile (BN = 64 or 128); each warpgroup owns
//     64 rows and gathers them itself, one chunk ahead through registers (16 bytes = 8 channels a
//     load, zeros outside the image and past C; 16-byte stores of 512 contiguous bytes a warp:
//     the same gather by cp.async cost 8x the shared-memory wavefronts);
//   - a k-chunk's packed weight words arrive by cp.async, kStages - 1 chunks ahead; all 256
//     threads expand them through a 16-entry nibble -> 4 x bf16 table (conflict-free) into one of
//     two B buffers, shared by both warpgroups;
//   - per chunk q: 4 wgmma k16 steps are issued; once this warpgroup's MMAs of chunk q - 1 are
//     done (wait_group 1) its buffers are refilled, and chunk q + 1 is made ready (activations
//     stored, weight words expanded, fenced to the async proxy) while chunk q's MMAs run.
// Shared-memory operand layout (no swizzle, K-major): per k16 step, 2 x R/8 core matrices of
// 8 rows x 16 bytes (8 bf16); 8 channels `piece` (0..7) of row c of a chunk are at byte
//   (piece / 2) * 32 R + (piece % 2) * 16 R + (c / 8) * 128 + (c % 8) * 16,
// R = 64 rows (A, per warpgroup) or BN columns (B): LBO = 16 R, SBO = 128.
#include <cuda_bf16.h>

#include "dev/kernels/w1a16_wgmma.h"
#include "kernels/cuda_common.h"
#include "kernels/persistent_grid.cuh"
#include "kernels/ptx.cuh"
#include "kernels/w1a16_internal.cuh"

namespace mdq::kernels::w1a16 {
namespace {

using ptx::smem_u32;

constexpr int kThreads = 256, kBM = 128, kStages = 4;
constexpr int kAStage = 64 * 64 * 2;  // bytes of one warpgroup's 64 x 64 bf16 chunk

template <int R>
__device__ __forceinline__ int operand_offset(int c, int piece) {
  return (piece >> 1) * 32 * R + (piece & 1) * 16 * R + (c >> 3) * 128 + (c & 7) * 16;
}

template <int BN>
__device__ __forceinline__ void mma_k16(float (&d)[BN / 8][4], uint64_t a, uint64_t b, bool accumulate) {
  if constexpr (BN == 64) ptx::wgmma_bf16_m64n64k16(d, a, b, accumulate);
  else ptx::wgmma_bf16_m64n128k16(d, a, b, accumulate);
}

template <int BN, bool TERNARY>
struct Smem {
  static constexpr int kPlanes = TERNARY ? 2 : 1;
  static constexpr int kRawStage = BN * 2 * kPlanes * 4;  // the chunk's 2 words per channel and plane
  static constexpr int kBBuffer = BN * 64 * 2;            // expanded bf16 B of one chunk
  static constexpr int kA = 0, kB = kA + 2 * 2 * kAStage, kRaw = kB + 2 * kBBuffer,
                       kLut = kRaw + kStages * kRawStage, kBytes = kLut + 16 * 8 * kPlanes;
};

template <int BN, bool TERNARY>
__global__ void __launch_bounds__(kThreads, 2) w1a16_wgmma_kernel(W1A16ConvArgs args, Geometry g) {
#ifdef MDQ_WGMMA_AVAILABLE
  using S = Smem<BN, TERNARY>;
  extern __shared__ __align__(128) uint8_t smem[];
  const int tid = threadIdx.x, wg = tid >> 7, tw = tid & 127, warp = tw >> 5, lane = tid & 31;
  const int n0 = blockIdx.y * BN;
  // Persistent: this CTA takes 128-row tiles blockIdx.x, + gridDim.x, ... of its channel slice,
  // and its chunks run as one stream across them (the next tile's first chunks load while this
  // tile's last ones multiply, and the fill of the pipeline is paid once per CTA).
  const long long tiles = (g.M + kBM - 1) / kBM;
  const long long my_tiles = blockIdx.x < tiles ? (tiles - 1 - blockIdx.x) / gridDim.x + 1 : 0;

  // Nibble -> 4 bf16 table, 16 entries of 8 bytes that cover the 32 banks once (so a warp's
  // lookups never conflict; a byte -> 8 bf16 table conflicted 13-way, measured): bit i set -> +1
  // (0x3F80), clear -> -1 (0xBF80). Ternary also a mask table: bit i of the nonzero plane clear
  // -> 0x0000.
  if (tid < 16) {
    uint2* lut = reinterpret_cast<uint2*>(smem + S::kLut);
    uint32_t w[2], z[2];
    for (int i = 0; i < 2; ++i) {
      w[i] = (tid >> (2 * i) & 1 ? kPlus : kMinus) | (tid >> (2 * i + 1) & 1 ? kPlus : kMinus) << 16;
      z[i] = (tid >> (2 * i) & 1 ? 0xFFFFu : 0u) | (tid >> (2 * i + 1) & 1 ? 0xFFFF0000u : 0u);
    }
    lut[tid] = make_uint2(w[0], w[1]);
    if (TERNARY) lut[16 + tid] = make_uint2(z[0], z[1]);
  }

  // This thread's gather row tw % 64 and pieces (8 channels, 16 bytes) 2 k + tw / 64, k = 0..3:
  // a warp's copy then writes 32 consecutive rows of one piece, 512 contiguous bytes of shared
  // memory (with eight pieces of a row per warp instead, every copy conflicted: 32 wavefronts an
  // instruction, measured, and the kernel was bound by it). The row's pointer at tap (0, 0)
  // (before x at the top/left border: only read at taps inside the image) and its tap mask.
  const int row = tw & 63, piece0 = tw >> 6;
  const uint32_t* row_ptr = reinterpret_cast<const uint32_t*>(args.x);
  uint32_t tap_mask = 0;
  auto setup_row = [&](long long tile) {
    const long long m = tile * kBM + 64 * wg + row;
    row_ptr = reinterpret_cast<const uint32_t*>(args.x);
    tap_mask = 0;
    if (m >= g.M) return;
    const int ohw = g.OH * g.OW;
    const int n = static_cast<int>(m / ohw), rem = static_cast<int>(m - (long long)n * ohw), oh = rem / g.OW;
    const int ih0 = oh * g.stride - g.pad, iw0 = (rem - oh * g.OW) * g.stride - g.pad;
    row_ptr = reinterpret_cast<const uint32_t*>(args.x + ((long long)(n * g.H + ih0) * g.W + iw0) * g.C);
    for (int kh = 0; kh < g.KH; ++kh)
      for (int kw = 0; kw < g.KW; ++kw) {
        const bool in = ih0 + kh >= 0 && ih0 + kh < g.H && iw0 + kw >= 0 && iw0 + kw < g.W;
        tap_mask |= (in ? 1u : 0u) << (kh * g.KW + kw);
      }
  };
  // This thread's share of the weight words: channel n0 + tid / 2, word tid % 2 of a chunk, in
  // each plane (threads past 2 BN copy nothing).
  const int wc = (tid >> 1) % BN, wi = tid & 1;
  const bool w_copies = tid < 2 * BN && n0 + wc < g.O;
  const long long w_off = w_copies ? (long long)(n0 + wc) * g.Ktot : 0;
  uint8_t* const a_row = smem + S::kA + wg * kAStage + operand_offset<64>(row, 0);
  const uint32_t raw_smem = smem_u32(smem + S::kRaw) + 4 * tid;
  const int chunks = g.T * g.CB;
  const long long total = my_tiles * chunks;  // steps of this CTA's stream

  // Chunks go in order (tap t, 64-channel block cb); two cursors carry their offsets from chunk to
  // chunk (no divisions): the weight words' cp.async runs kStages - 1 chunks ahead, the
  // activations' register-staged gather one chunk ahead.
  struct Cursor {
    int t = 0, cb = 0, kh = 0, kw = 0;
  };
  auto advance = [&](Cursor& c) {  // true when it wraps to the next tile's chunk 0
    if (++c.cb == g.CB) {
      c.cb = 0;
      ++c.t;
      if (++c.kw == g.KW) c.kw = 0, ++c.kh;
    }
    if (c.t < g.T) return false;
    c = Cursor{};
    return true;
  };
  long long a_tile = blockIdx.x;  // the tile fetch_a gathers for
  setup_row(a_tile);
  Cursor raw_cur, a_cur;
  int raw_stage = 0;
  auto load_raw = [&]() {
    if (tid < 2 * BN) {
      const int word = 2 * raw_cur.cb + wi;
      const bool ok = w_copies && word < g.Cw;
      const uint32_t dst = raw_smem + raw_stage * S::kRawStage;
      ptx::cp_async_gather<4>(dst, args.sign + w_off, raw_cur.t * g.Cw + word, ok);
      if (TERNARY) ptx::cp_async_gather<4>(dst + 8 * BN, args.nonzero + w_off, raw_cur.t * g.Cw + word, ok);
    }
    if (++raw_stage == kStages) raw_stage = 0;
    advance(raw_cur);
  };
  uint4 a_regs[4];  // pieces 2 k + piece0 of this thread's row, of the chunk to store next
  auto fetch_a = [&]() {
    const uint32_t tap_words = ((a_cur.kh * g.W + a_cur.kw) * g.C + a_cur.cb * 64) >> 1;  // bf16 pairs
    const bool tap_in = (tap_mask >> a_cur.t) & 1u;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int p = 2 * k + piece0;
      a_regs[k] = ptx::ldg_gather16(row_ptr, tap_words + 4 * p, tap_in && a_cur.cb * 64 + 8 * p < g.C);
    }
    if (advance(a_cur)) setup_row(a_tile += gridDim.x);
  };
  auto store_a = [&](long long q) {  // into activation buffer q % 2
#pragma unroll
    for (int k = 0; k < 4; ++k)
      *reinterpret_cast<uint4*>(a_row + (q & 1) * 2 * kAStage + operand_offset<64>(0, 2 * k + piece0)) = a_regs[k];
  };

  // Defined by the first MMA (scale-d 0): zeroing it with ordinary instructions would make
  // ptxas serialize the wgmmas (C7515).
  float acc[BN / 8][4];
  if (total == 0) return;
  fetch_a();
  store_a(0);
  if (total > 1) fetch_a();
#pragma unroll
  for (int q = 0; q < kStages - 1; ++q) {
    if (q < total) load_raw();
    ptx::cp_async_commit();
  }
  const uint32_t b_smem = smem_u32(smem + S::kB);
  const uint2* lut = reinterpret_cast<const uint2*>(smem + S::kLut);
  // Expand chunk q's weights into B buffer q % 2: thread -> channel tid % BN and P consecutive
  // pieces of 8 channels' worth of K (one byte of a packed word each), consecutive threads on
  // consecutive channels (conflict-free 16-byte stores). Then fence it (and the chunk's copies)
  // to wgmma's proxy; the caller's barrier publishes it.
  auto expand = [&](long long q) {  // step q of the stream
    constexpr int P = 8 * BN / kThreads;
    const uint32_t* raw = reinterpret_cast<const uint32_t*>(smem + S::kRaw + (q % kStages) * S::kRawStage);
    const int c = tid % BN, p0 = (tid / BN) * P;
    const uint32_t word = raw[2 * c + (p0 >> 2)], zword = TERNARY ? raw[2 * BN + 2 * c + (p0 >> 2)] : 0u;
    uint8_t* B = smem + S::kB + (q & 1) * S::kBBuffer + operand_offset<BN>(c, 0);
#pragma unroll
    for (int i = 0; i < P; ++i) {
      const int p = p0 + i, shift = 8 * (p & 3);
      const uint2 lo = lut[(word >> shift) & 0xFu], hi = lut[(word >> (shift + 4)) & 0xFu];
      uint4 v = make_uint4(lo.x, lo.y, hi.x, hi.y);
      if (TERNARY) {
        const uint2 zl = lut[16 + ((zword >> shift) & 0xFu)], zh = lut[16 + ((zword >> (shift + 4)) & 0xFu)];
        v = make_uint4(v.x & zl.x, v.y & zl.y, v.z & zh.x, v.w & zh.y);
      }
      *reinterpret_cast<uint4*>(B + (p >> 1) * 32 * BN + (p & 1) * 16 * BN) = v;
    }
    ptx::fence_proxy_async_shared();
  };

  // Chunk 0 ready before the loop; in the loop, chunk q + 1 is made ready (activations stored,
  // weight words waited for and expanded) while chunk q's MMAs run.
  ptx::cp_async_wait<kStages - 2>();
  __syncthreads();  // chunk 0's weight words (everyone's) and the tables
  expand(0);
  __syncthreads();
  // Epilogue of a tile: row 16 warp + 8 h + (lane / 4) of this warpgroup's 64, columns
  // 8 j + 2 (lane % 4) + e.
  auto epilogue = [&](long long tile) {
    // acc is read outside any branch: a read on a divergent path makes ptxas serialize every
    // wgmma (C7518).
    const int gq = lane >> 2, tq = lane & 3;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const long long mr = tile * kBM + 64 * wg + 16 * warp + 8 * h + gq;
#pragma unroll
      for (int j = 0; j < BN / 8; ++j) {
        const int o = n0 + 8 * j + 2 * tq;
        float y[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int oe = min(o + e, g.O - 1);
          y[e] = acc[j][2 * h + e] * (args.scale ? __ldg(args.scale + oe) : 1.f) +
                 (args.shift ? __ldg(args.shift + oe) : 0.f);
          if (args.relu) y[e] = fmaxf(y[e], 0.f);
        }
        if (mr >= g.M || o >= g.O) continue;
        const long long idx = mr * g.O + o;
        const bool two = o + 1 < g.O, pair = two && (g.O & 1) == 0;
        if (args.out_bf16) {
          uint16_t* out = static_cast<uint16_t*>(args.out) + idx;
          const __nv_bfloat162 v = __floats2bfloat162_rn(y[0], y[1]);
          if (pair) {
            *reinterpret_cast<__nv_bfloat162*>(out) = v;
          } else {
            out[0] = __bfloat16_as_ushort(v.x);
            if (two) out[1] = __bfloat16_as_ushort(v.y);
          }
        } else {
          float* out = static_cast<float*>(args.out) + idx;
          if (pair) {
            *reinterpret_cast<float2*>(out) = make_float2(y[0], y[1]);
          } else {
            out[0] = y[0];
            if (two) out[1] = y[1];
          }
        }
      }
    }
  };

  long long i = 0;  // step of the stream
  for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    for (int q = 0; q < chunks; ++q, ++i) {
      ptx::wgmma_fence();
      const uint32_t a = smem_u32(smem + S::kA) + wg * kAStage + (i & 1) * 2 * kAStage;
      const uint32_t b = b_smem + (i & 1) * S::kBBuffer;
#pragma unroll
      for (int s = 0; s < 4; ++s)
        mma_k16<BN>(acc, ptx::wgmma_desc(a + s * 32 * 64, 16 * 64, 128),
                    ptx::wgmma_desc(b + s * 32 * BN, 16 * BN, 128), q > 0 || s > 0);
      ptx::wgmma_commit();
      ptx::wgmma_wait<1>();  // step i - 1's MMAs are done: its buffers may be refilled
      if (i + kStages - 1 < total) load_raw();
      ptx::cp_async_commit();
      if (i + 1 < total) {
        store_a(i + 1);
        if (i + 2 < total) fetch_a();
        ptx::cp_async_wait<kStages - 2>();  // step i + 1's weight words (this thread's) have landed
        __syncthreads();                     // everyone's; both warpgroups are past step i - 1
        expand(i + 1);                       // (its fence also covers the activations just stored)
        __syncthreads();
      }
    }
    ptx::wgmma_wait<0>();
    epilogue(tile);  // (acc is then overwritten by the next tile's first MMA)
  }
#endif
}

template <int BN, bool TERNARY>
void launch(const W1A16ConvArgs& a, const Geometry& g) {
  auto kernel = w1a16_wgmma_kernel<BN, TERNARY>;
  const int smem = Smem<BN, TERNARY>::kBytes;
  const dim3 grid = persistent_grid(kernel, kThreads, smem, (g.M + kBM - 1) / kBM, (g.O + BN - 1) / BN);
  kernel<<<grid, kThreads, smem, cuda::stream()>>>(a, g);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

}  // namespace mdq::kernels::w1a16

namespace mdq::dev {

bool w1a16_wgmma_conv2d(const kernels::W1A16ConvArgs& a) {
#ifndef MDQ_HAS_SM90A
  (void)a;
  return false;
#else
  using namespace kernels::w1a16;
  static const bool hopper = cuda::compute_capability() == 90;
  if (!hopper || a.C % 8 != 0) return false;
  Geometry g{};
  static_cast<kernels::ConvShape&>(g) = kernels::conv_shape(a);
  g.CB = (a.C + 63) / 64;
  g.M = (long long)a.N * g.OH * g.OW;
  if (g.M / kBM > 0x7fffffff) return false;
  if (g.M <= 0 || g.O <= 0) return true;  // an empty output: nothing to launch
  const bool ternary = a.nonzero != nullptr;
  if (g.O <= 64) ternary ? launch<64, true>(a, g) : launch<64, false>(a, g);
  else ternary ? launch<128, true>(a, g) : launch<128, false>(a, g);
  return true;
#endif
}

}  // namespace mdq::dev

// W1A16 / W2A16 convolution on Hopper's warpgroup MMA (sm_90a): the implicit GEMM of
// kernels/w1a16_conv.cu (K = taps x channels, k-chunk = 64 channels of one tap) turned around so
// that the weights are wgmma's A operand, built in registers from their packed bits, and the
// gathered activations its B operand in shared memory (DESIGN.md E12's last bullet):
//   D[o][m] = sum_k W[o][k] X[m][k],  o = output channel (wgmma M), m = output pixel (wgmma N).
//
// The default W1A16 path on sm_90a (kernels/w1a16_conv.cu dispatches here first). Measured on an
// H200 (benchmarks/results/2026-12-03-h200-session23.txt, batch 256): 0.50-0.67x cuDNN bf16 on
// ResNet-18's ImageNet 3x3 layers (236-490 TFLOPS, 25-51% of this form's wgmma probe), 1.4-2.4x
// the mma.sync kernel; ncu: 48-57% of issue slots busy with 4 warps a scheduler (two CTAs an
// SM, by registers) and about one of them eligible; the stalls are fixed-latency dependencies
// (building A), shared-memory loads and the per-chunk barrier. Next: producer warps gathering
// ahead behind mbarriers, so the MMA warpgroups never meet a CTA barrier, and wider tiles.
//
// Why it is shaped this way (a first wgmma kernel, pixels as A and the weights expanded into
// shared memory, ran at 0.21-0.27x cuDNN bf16 with under one eligible warp per scheduler):
//   - weights as A from registers: a warp's A fragment of an m64k16 step is 16 channels x 16 K,
//     which two packed words per channel give with a shift, an AND, an IMAD and a XOR per
//     register (expand_signs, the mma.sync kernel's B trick) -- no shared-memory stores, no
//     barrier between expanding and multiplying, and each expansion serves the whole pixel tile;
//   - activations as B in wgmma's 128-byte swizzle: a pixel's 64 channels of one tap are one
//     128-byte row, gathered by 16-byte cp.async with the chunk XOR-swizzled by row % 8 (the
//     layout of the mma.sync kernel's A tile), so a warp's copies write 4 whole rows (4
//     wavefronts) and the descriptor reads them as they lie;
//   - a cp.async pipeline of kStages stages and one barrier a chunk: while chunk q's MMAs run,
//     chunk q + 1's copies are waited for and published, and chunk q + kStages - 1 is copied
//     into chunk q - 1's stage;
//   - a CTA is two warpgroups over a 128-pixel tile: 128 channels (each warpgroup 64, N = 128)
//     when O > 64, else 64 channels (each warpgroup 64 pixels, N = 64). Two CTAs an SM (<= 128
//     registers; 71 KB of shared memory at 4 stages), so one CTA's pipeline fill and epilogue
//     overlap the other one's MMAs;
//   - the epilogue (scale, shift, ReLU) goes through shared memory: the accumulators hold a
//     channel pair per pixel pair, the output is NHWC, so each tile is transposed there and
//     written in 16-byte pieces along the channels.
#include <cuda_bf16.h>

#include <cstdlib>
#include <cstring>

#include "kernels/cuda_common.h"
#include "kernels/ptx.cuh"
#include "kernels/w1a16_internal.cuh"

namespace mdq::kernels::w1a16 {
namespace {

using ptx::smem_u32;

constexpr int kThreads = 256, kPixels = 128;
constexpr int kARows = kPixels * 128;  // bytes of a stage's activation tile: 128 pixels x 64 bf16

// CHB = 64-channel blocks a CTA: 2 (each warpgroup a block, all 128 pixels) or 1 (both
// warpgroups the block, 64 pixels each). Pipeline stages: 4 for binary weights (measured against
// 5 and 6 on an H200: +8% on the 64-channel layers, the same elsewhere), 5 for ternary (not
// measured at 4).
template <int CHB, bool TERNARY>
struct Tile {
  static constexpr int kStages = TERNARY ? 5 : 4;
  static constexpr int kChannels = 64 * CHB, kN = CHB == 2 ? 128 : 64;  // CTA channels; wgmma N
  static constexpr int kPlanes = TERNARY ? 2 : 1;
  static constexpr int kWeightBytes = kPlanes * kChannels * 8;  // 2 packed words a channel and plane
  static constexpr int kStage = (kARows + kWeightBytes + 1023) / 1024 * 1024;
  static constexpr int kOutStride = kChannels + 4;  // floats a pixel of the epilogue's tile
  static constexpr int kBytes = kStages * kStage + 1024;  // + the base's alignment
  static_assert(kPixels * kOutStride * 4 <= kStages * kStage, "the epilogue's tile fits the stages");
};

template <int CHB>
__device__ __forceinline__ void mma_k16(float (&d)[CHB == 2 ? 16 : 8][4], const uint32_t (&a)[4], uint64_t b) {
  if constexpr (CHB == 2) ptx::wgmma_bf16_m64n128k16_rs(d, a, b);
  else ptx::wgmma_bf16_m64n64k16_rs(d, a, b);
}

template <int CHB, bool TERNARY>
__global__ void __launch_bounds__(kThreads, 2) w1a16_wgmma_kernel(W1A16ConvArgs args, Geometry g, int channel_tiles) {
#ifdef MDQ_WGMMA_AVAILABLE
  using T = Tile<CHB, TERNARY>;
  constexpr int kStages = T::kStages;
  constexpr int NJ = T::kN / 8;
  extern __shared__ uint8_t smem_raw[];
  __shared__ int4 rows[kPixels];
  // The swizzle is a function of the address: stages start on 1024-byte boundaries. (Offset
  // from smem_raw, not rounded as a generic address: the compiler then still knows these are
  // shared-memory reads, LDS, where a generic pointer made them LD: measured, a third of the loop's
  // instructions went to that and to 64-bit index math.)
  const uint32_t raw_base = smem_u32(smem_raw);
  uint8_t* const smem = smem_raw + (((raw_base + 1023u) & ~1023u) - raw_base);

  const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31, gq = lane >> 2, tq = lane & 3;
  // Channel tiles vary fastest, so the CTAs that read one pixel tile run together (L2 reuse).
  const long long m0 = static_cast<long long>(blockIdx.x / channel_tiles) * kPixels;
  const int n0 = static_cast<int>(blockIdx.x % channel_tiles) * T::kChannels;
  // This warpgroup's 64 channels (a block of the CTA's) and pixels (all 128, or its half).
  const int wg_block = CHB == 2 ? wg : 0, wg_pixel0 = CHB == 2 ? 0 : 64 * wg;

  // The tile's row table (pixel_row).
  for (int r = tid; r < kPixels; r += kThreads) rows[r] = pixel_row(g, m0 + r);
  __syncthreads();

  // Producer side, every thread: 16-byte chunk cc of pixels tid / 8 + 32 i, and packed weight
  // words idx = tid + 256 k of the stage's [plane][channel][2 words] (channel idx / 2 % channels).
  const int cc = tid & 7;
  constexpr int kWords = 2 * T::kPlanes * T::kChannels, kWordCopies = (kWords + kThreads - 1) / kThreads;
  const uint32_t* w_src[kWordCopies];
  bool w_ok[kWordCopies];
#pragma unroll
  for (int k = 0; k < kWordCopies; ++k) {
    const int idx = tid + k * kThreads, channel = (idx >> 1) % T::kChannels, plane = (idx >> 1) / T::kChannels;
    w_ok[k] = idx < kWords && n0 + channel < g.O;
    w_src[k] = (plane ? args.nonzero : args.sign) + (w_ok[k] ? static_cast<long long>(n0 + channel) * g.Ktot : 0);
  }
  const uint32_t smem_base = smem_u32(smem);
  int lkh = 0, lkw = 0, lcb = 0, lstage = 0;  // the next chunk to load: tap (lkh, lkw), channel block lcb; its stage
  auto load_chunk = [&]() {
    const uint32_t st = smem_base + lstage * T::kStage;
    lstage = lstage + 1 == kStages ? 0 : lstage + 1;
    const int c = lcb * 64 + cc * 8;
    const bool c_ok = c < g.C;
    const int dpix = lkh * g.W + lkw;
#pragma unroll
    for (int i = 0; i < kPixels * 8 / kThreads; ++i) {
      const int r = (tid >> 3) + i * (kThreads / 8);
      const int4 rv = rows[r];
      const int ih = rv.y + lkh, iw = rv.z + lkw;
      const bool ok = c_ok && static_cast<unsigned>(ih) < static_cast<unsigned>(g.H) &&
                      static_cast<unsigned>(iw) < static_cast<unsigned>(g.W);
      // 32-bit element index (conv2d_wgmma bounds N H W C below 2^32): one IMAD.WIDE.U32
      const uint32_t at = static_cast<uint32_t>(rv.x + dpix) * static_cast<uint32_t>(g.C) + static_cast<uint32_t>(c);
      const uint16_t* src = ok ? args.x + at : args.x;
      // .cg (L2 only): through L1 (.ca, for the overlapping taps) measured 5-10% slower
      ptx::cp_async16_zfill_u32(st + r * 128 + ((cc ^ (r & 7)) << 4), src, ok);
    }
    const int tap_word = (lkh * g.KW + lkw) * g.Cw;
#pragma unroll
    for (int k = 0; k < kWordCopies; ++k) {
      const int idx = tid + k * kThreads, word = 2 * lcb + (idx & 1);
      if (idx < kWords) ptx::cp_async_gather<4>(st + kARows + 4 * idx, w_src[k], tap_word + word, w_ok[k] && word < g.Cw);
    }
    if (++lcb == g.CB) {
      lcb = 0;
      if (++lkw == g.KW) {
        lkw = 0;
        ++lkh;
      }
    }
  };

  // Consumer side: this thread's A fragments of chunk q -- rows 16 warp + gq and + 8 of the
  // warpgroup's block, k = 2 tq (+1, +8, +9) of each k16 step (mma.sync m16n8k16's A layout,
  // which wgmma's register A keeps per warp).
  const int a_row = wg_block * 64 + 16 * warp + gq;
  // f(m, r0, r1) for each k16 step s and both rows, m = that row's 2 bits of k = 2 tq (+1) at bits
  // 0, 1 and of k = 2 tq + 8 (+9) at bits 8, 9, of one plane of the stage's weight words.
  auto each_step = [&](const uint8_t* plane, uint32_t (&a)[4][4], auto&& f) {
    const uint2 s0 = *reinterpret_cast<const uint2*>(plane + 8 * a_row);
    const uint2 s1 = *reinterpret_cast<const uint2*>(plane + 8 * (a_row + 8));
    const uint32_t w0[2] = {s0.x >> (2 * tq), s0.y >> (2 * tq)}, w1[2] = {s1.x >> (2 * tq), s1.y >> (2 * tq)};
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      const int sh = 16 * (s & 1);
      f((w0[s >> 1] >> sh) & 0x0303u, a[s][0], a[s][2]);
      f((w1[s >> 1] >> sh) & 0x0303u, a[s][1], a[s][3]);
    }
  };
  auto build_a = [&](int stage, uint32_t (&a)[4][4]) {
    const uint8_t* wsm = smem + stage * T::kStage + kARows;
    each_step(wsm, a, [](uint32_t m, uint32_t& r0, uint32_t& r1) { expand_signs(m, r0, r1); });
    if constexpr (TERNARY)
      each_step(wsm + T::kChannels * 8, a, [](uint32_t z, uint32_t& r0, uint32_t& r1) { mask_zeros(z, r0, r1); });
  };

  float acc[NJ][4];
#pragma unroll
  for (int j = 0; j < NJ; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
  ptx::fence_operands(acc);

  const int nk = g.T * g.CB;
#pragma unroll
  for (int s = 0; s < kStages - 2; ++s) {
    if (s < nk) load_chunk();
    ptx::cp_async_commit();
  }
  // Chunk q's copies: wait for this thread's, fence them to wgmma's proxy, barrier for everyone's;
  // then refill the stage of chunk q - 2 with chunk q + kStages - 2 (every warpgroup has waited
  // for chunk q - 2's MMAs before this barrier).
  auto publish = [&](int q) {
    ptx::cp_async_wait<kStages - 3>();
    ptx::fence_proxy_async_shared();
    __syncthreads();
    if (q + kStages - 2 < nk) load_chunk();
    ptx::cp_async_commit();
  };
  // One set of A registers: chunk q + 1's are built once chunk q's MMAs are done. (A second set,
  // built while they run, measured no faster: with chunks in pairs, so that no wgmma is in flight
  // across the loop's back edge -- else ptxas serializes every wgmma, C7513.) What overlaps the
  // MMAs is chunk q + 1's wait and barrier and chunk q + kStages - 1's copies.
  uint32_t a[4][4];
  publish(0);
  for (int q = 0, stage = 0; q < nk; ++q, stage = stage + 1 == kStages ? 0 : stage + 1) {
    build_a(stage, a);
    const uint32_t b = smem_base + stage * T::kStage + wg_pixel0 * 128;
    ptx::wgmma_fence();
#pragma unroll
    for (int s = 0; s < 4; ++s) mma_k16<CHB>(acc, a[s], ptx::wgmma_desc_sw128(b + 32 * s));
    ptx::wgmma_commit();
    if (q + 1 < nk) publish(q + 1);
    ptx::wgmma_wait<0>();
  }
  ptx::fence_operands(acc);
  ptx::cp_async_wait<0>();
  __syncthreads();  // every warpgroup is done with the stages: they hold the epilogue's tile now

  // Epilogue: y = acc scale + shift (ReLU) into the tile [pixel][channel] (f32), then out in
  // 16-byte pieces along the channels. acc[j][2h+e] = D[16 warp + 8h + gq][8j + 2tq + e].
  float* tile = reinterpret_cast<float*>(smem);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int c = wg_block * 64 + 16 * warp + 8 * h + gq, o = min(n0 + c, g.O - 1);
    const float sc = args.scale ? __ldg(args.scale + o) : 1.f, sh = args.shift ? __ldg(args.shift + o) : 0.f;
#pragma unroll
    for (int j = 0; j < NJ; ++j)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float y = acc[j][2 * h + e] * sc + sh;
        if (args.relu) y = fmaxf(y, 0.f);
        tile[(wg_pixel0 + 8 * j + 2 * tq + e) * T::kOutStride + c] = y;
      }
  }
  __syncthreads();
  const int per = args.out_bf16 ? 8 : 4;  // channels a 16-byte piece
  const int pieces = T::kChannels / per;
  const bool aligned = g.O % per == 0 && reinterpret_cast<uintptr_t>(args.out) % 16 == 0;
  for (int i = tid; i < kPixels * pieces; i += kThreads) {
    const int r = i / pieces, c = (i - r * pieces) * per;
    const long long m = m0 + r;
    const int o = n0 + c;
    if (m >= g.M || o >= g.O) continue;
    const float* v = tile + r * T::kOutStride + c;
    const long long idx = m * g.O + o;
    if (args.out_bf16) {
      uint16_t* out = static_cast<uint16_t*>(args.out) + idx;
      if (aligned) {
        uint4 p;
        uint32_t* pw = &p.x;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          const __nv_bfloat162 b2 = __floats2bfloat162_rn(v[2 * k], v[2 * k + 1]);
          pw[k] = *reinterpret_cast<const uint32_t*>(&b2);
        }
        *reinterpret_cast<uint4*>(out) = p;
      } else {
        for (int k = 0; k < per && o + k < g.O; ++k) out[k] = __bfloat16_as_ushort(__float2bfloat16_rn(v[k]));
      }
    } else {
      float* out = static_cast<float*>(args.out) + idx;
      if (aligned)
        *reinterpret_cast<float4*>(out) = make_float4(v[0], v[1], v[2], v[3]);
      else
        for (int k = 0; k < per && o + k < g.O; ++k) out[k] = v[k];
    }
  }
#endif
}

template <int CHB, bool TERNARY>
void launch(const W1A16ConvArgs& a, const Geometry& g) {
  using T = Tile<CHB, TERNARY>;
  auto kernel = w1a16_wgmma_kernel<CHB, TERNARY>;
  static const bool configured = opt_in_shared_memory(kernel, T::kBytes);
  (void)configured;
  const int channel_tiles = (g.O + T::kChannels - 1) / T::kChannels;
  const long long ctas = (g.M + kPixels - 1) / kPixels * channel_tiles;
  kernel<<<static_cast<unsigned>(ctas), kThreads, T::kBytes, cuda::stream()>>>(a, g, channel_tiles);
  CUDA_CHECK_LAUNCH();
}
}  // namespace

bool conv2d_wgmma(const W1A16ConvArgs& a, const Geometry& g) {
#ifndef MDQ_HAS_SM90A
  (void)a, (void)g;
  return false;
#else
  static const bool hopper = cuda::compute_capability() == 90;
  if (!hopper || g.C % 8 != 0) return false;
  if (const char* e = std::getenv("MDQ_W1A16_KERNEL"); e && std::strcmp(e, "mma") == 0) return false;
  // 16-byte activation copies; pixel indices are ints in the row table, element indices 32-bit
  // unsigned; the grid is one dimension.
  if (reinterpret_cast<uintptr_t>(a.x) % 16 != 0) return false;
  if (static_cast<long long>(a.N) * a.H * a.W >= (1LL << 31) - (1LL << 20)) return false;
  if (static_cast<long long>(a.N) * a.H * a.W * a.C >= (1LL << 32)) return false;
  if ((g.M + kPixels - 1) / kPixels * ((g.O + 63) / 64) > 0x7fffffffLL) return false;
  const bool ternary = a.nonzero != nullptr;
  if (g.O <= 64) ternary ? launch<1, true>(a, g) : launch<1, false>(a, g);
  else ternary ? launch<2, true>(a, g) : launch<2, false>(a, g);
  return true;
#endif
}

}  // namespace mdq::kernels::w1a16

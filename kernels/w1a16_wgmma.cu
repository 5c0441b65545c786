// W1A16 / W2A16 convolution on Hopper's warpgroup MMA (sm_90a): the implicit GEMM of
// kernels/w1a16_conv.cu (K = taps x channels, k-chunk = 64 channels of one tap) turned around so
// that the weights are wgmma's A operand, built in registers from their packed bits, and the
// gathered activations its B operand in shared memory (DESIGN.md E12's last bullet):
//   D[o][m] = sum_k W[o][k] X[m][k],  o = output channel (wgmma M), m = output pixel (wgmma N).
//
// The default W1A16 path on sm_90a (kernels/w1a16_conv.cu dispatches here first), but for the
// binary layers where the 256-pixel TMA-fed kernel (kernels/w1a16_wgmma_tma.cu) measured faster,
// which conv2d_wgmma hands to it. Measured on an
// H200 (benchmarks/results/2026-12-03-h200-session25.txt, batch 256): 0.77-0.80x cuDNN bf16 on
// ResNet-18's ImageNet 3x3 layers (378-647 TFLOPS, 39-66% of this form's wgmma probe), 2.3-3.2x
// the mma.sync kernel. ncu (imagenet 256): 44% of issue slots busy; a chunk's k loop is ~160
// instructions a warp (the A build 77, the copies 66); the warps wait most at the per-chunk
// barrier and for the MMAs; memory (L2 at 25-30% of its peak) is not the limit. A
// warp-specialised form (dev/kernels/w1a16_ws.cu) measured slower.
//
// Why it is shaped this way (a first wgmma kernel, pixels as A and the weights expanded into
// shared memory, ran at 0.21-0.27x cuDNN bf16 with under one eligible warp per scheduler):
//   - weights as A from registers: a warp's A fragment of an m64k16 step is 16 channels x 16 K,
//     which two packed words per channel give with a byte-sign prmt and one LOP3 per register
//     (weight_fragments) -- no shared-memory stores, no barrier between expanding and
//     multiplying, and each expansion serves the whole pixel tile;
//   - activations as B in wgmma's 128-byte swizzle: a pixel's 64 channels of one tap are one
//     128-byte row, gathered by 16-byte cp.async with the chunk XOR-swizzled by row % 8 (the
//     layout of the mma.sync kernel's A tile), so a warp's copies write 4 whole rows (4
//     wavefronts) and the descriptor reads them as they lie;
//   - each thread's rows of the tile are read once into registers (ChunkGather: an element base
//     and a mask of the taps inside the image), so a copy is a bit test, an add and the cp.async
//     (+8-12% on the layers of 128 channels and more, against a row-table read and the bounds and
//     index math every chunk);
//   - a cp.async pipeline of kStages stages and one barrier a chunk: while chunk q's MMAs run,
//     chunk q + 1's copies are waited for and published, and chunk q + kStages - 1 is copied
//     into chunk q - 1's stage;
//   - a CTA works on a 128-pixel tile: when O > 64, two warpgroups of 64 channels each (N = 128),
//     two CTAs an SM (<= 128 registers; 71 KB of shared memory at 4 stages), so one CTA's
//     pipeline fill and epilogue overlap the other one's MMAs; when O <= 64, one warpgroup of 64
//     channels (N = 128), three CTAs to an SM (69 KB each), whose per-chunk barrier waits for 4
//     warps, not 8: against two warpgroups of 64 pixels each (N = 64), +33% on ImageNet's
//     64-channel layer and +23% on CIFAR's (H200, session 25 call 5). Ternary weights keep the
//     two-warpgroup form there (five stages would leave the one-warpgroup CTA two an SM; not
//     measured);
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

constexpr int kPixels = 128;
constexpr int kARows = kPixels * 128;  // bytes of a stage's activation tile: 128 pixels x 64 bf16

// CHB = 64-channel blocks a CTA, WGS = its warpgroups: (2, 2) each warpgroup a block, all 128
// pixels; (1, 1) one warpgroup, all 128 pixels; (1, 2) both warpgroups the block, 64 pixels each.
// Pipeline stages: 4 for binary weights (measured against 5 and 6 on an H200: +8% on the
// 64-channel layers, the same elsewhere), 5 for ternary (not measured at 4).
template <int CHB, int WGS, bool TERNARY>
struct Tile {
  static constexpr int kThreads = 128 * WGS;
  static constexpr int kStages = TERNARY ? 5 : 4;
  static constexpr int kChannels = 64 * CHB, kN = CHB == 2 || WGS == 1 ? 128 : 64;  // CTA channels; wgmma N
  static constexpr int kPlanes = TERNARY ? 2 : 1;
  static constexpr int kWeightBytes = kPlanes * kChannels * 8;  // 2 packed words a channel and plane
  static constexpr int kStage = (kARows + kWeightBytes + 1023) / 1024 * 1024;
  static constexpr int kOutStride = kChannels + 4;  // floats a pixel of the epilogue's tile
  static constexpr int kBytes = kStages * kStage + 1024;  // + the base's alignment
  static_assert(kPixels * kOutStride * 4 <= kStages * kStage, "the epilogue's tile fits the stages");
};

template <int CHB, int WGS, bool TERNARY>
__global__ void __launch_bounds__(128 * WGS, WGS == 2 ? 2 : 3)
    w1a16_wgmma_kernel(W1A16ConvArgs args, Geometry g, int channel_tiles) {
#ifdef MDQ_WGMMA_AVAILABLE
  using T = Tile<CHB, WGS, TERNARY>;
  constexpr int kThreads = T::kThreads;
  constexpr int kStages = T::kStages;
  constexpr int NJ = T::kN / 8;
  extern __shared__ uint8_t smem_raw[];
  uint8_t* const smem = align_1024(smem_raw);

  const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31, gq = lane >> 2, tq = lane & 3;
  // Channel tiles vary fastest, so the CTAs that read one pixel tile run together (L2 reuse).
  const long long m0 = static_cast<long long>(blockIdx.x / channel_tiles) * kPixels;
  const int n0 = static_cast<int>(blockIdx.x % channel_tiles) * T::kChannels;
  // This warpgroup's 64 channels (a block of the CTA's) and pixels (all 128, or its half).
  const int wg_block = CHB == 2 ? wg : 0, wg_pixel0 = CHB == 1 && WGS == 2 ? 64 * wg : 0;

  __shared__ int2 rows[kPixels];  // the tile's gather_row table
  for (int r = tid; r < kPixels; r += kThreads) rows[r] = gather_row(g, m0 + r);
  __syncthreads();

  // Producer side, every thread.
  const ChunkGather<kPixels, kThreads> gather(rows, g, tid);
  const WeightCopies<T::kChannels, T::kPlanes, kThreads> weights(args, g, n0, tid);
  const uint32_t smem_base = smem_u32(smem);
  // The next chunk to load: tap (lkh, lkw), channel block lcb (ChunkWalk's order, written out:
  // through ChunkWalk ptxas schedules this kernel differently, and this form is the one measured);
  // its stage.
  int lkh = 0, lkw = 0, lcb = 0, lstage = 0;
  auto load_chunk = [&]() {
    const uint32_t st = smem_base + lstage * T::kStage;
    lstage = lstage + 1 == kStages ? 0 : lstage + 1;
    gather.copy(st, args.x, g, lkh, lkw, lcb);
    weights.copy(st + kARows, g, lkh, lkw, lcb);
    if (++lcb == g.CB) {
      lcb = 0;
      if (++lkw == g.KW) {
        lkw = 0;
        ++lkh;
      }
    }
  };

  // Consumer side: this thread's A fragments of chunk q, rows 16 warp + gq (+ 8) of the warpgroup's block.
  const int a_row = wg_block * 64 + 16 * warp + gq;

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
  // The weight words of chunk q + 1 are read once it is published, before chunk q's MMAs are
  // waited for, so that only the A build (no shared-memory latency) stands between two chunks.
  uint32_t a[4][4];
  publish(0);
  auto weight_words = [&](int stage) {
    return load_weight_words<T::kChannels, TERNARY>(smem + stage * T::kStage + kARows, a_row);
  };
  WeightWords<TERNARY> words = weight_words(0);
  for (int q = 0, stage = 0; q < nk; ++q) {
    weight_fragments<TERNARY>(words, tq, a);
    // (k16 step s starts 32 bytes further on in the 128-byte swizzled rows: 2 descriptor units)
    const uint64_t b = ptx::wgmma_desc_sw128(smem_base + stage * T::kStage + wg_pixel0 * 128);
    ptx::wgmma_fence();
#pragma unroll
    for (int s = 0; s < 4; ++s) ptx::wgmma_bf16_k16_rs(acc, a[s], ptx::wgmma_desc_advance(b, 2 * s));
    ptx::wgmma_commit();
    stage = stage + 1 == kStages ? 0 : stage + 1;
    if (q + 1 < nk) {
      publish(q + 1);
      words = weight_words(stage);
    }
    ptx::wgmma_wait<0>();
  }
  ptx::fence_operands(acc);
  ptx::cp_async_wait<0>();
  __syncthreads();  // every warpgroup is done with the stages: they hold the epilogue's tile now

  // Epilogue through the tile [pixel][channel] (f32), out in 16-byte pieces along the channels.
  float* tile = reinterpret_cast<float*>(smem);
  acc_to_tile<T::kOutStride>(acc, tile, wg_block * 64 + 16 * warp, wg_pixel0, n0, args, g, gq, tq);
  __syncthreads();
  store_tile<kPixels, T::kChannels, T::kOutStride>(tile, m0, n0, args, g, tid, kThreads);
#endif
}

template <int CHB, int WGS, bool TERNARY>
void launch(const W1A16ConvArgs& a, const Geometry& g) {
  using T = Tile<CHB, WGS, TERNARY>;
  launch_tiles<w1a16_wgmma_kernel<CHB, WGS, TERNARY>>(T::kThreads, T::kBytes, kPixels, T::kChannels, a, g);
}
}  // namespace

bool conv2d_wgmma(const W1A16ConvArgs& a, const Geometry& g) {
  if (!sm90a_kernels_apply(a, g)) return false;
  const char* e = std::getenv("MDQ_W1A16_KERNEL");
  if (e && std::strcmp(e, "mma") == 0) return false;
  const bool cpasync = e && std::strcmp(e, "cpasync") == 0, tma = e && std::strcmp(e, "tma") == 0;
  if (!cpasync && conv2d_wgmma_tma(a, g, tma)) return true;
  const bool ternary = a.nonzero != nullptr;
  if (g.O <= 64) ternary ? launch<1, 2, true>(a, g) : launch<1, 1, false>(a, g);
  else ternary ? launch<2, 2, true>(a, g) : launch<2, 2, false>(a, g);
  return true;
}

}  // namespace mdq::kernels::w1a16

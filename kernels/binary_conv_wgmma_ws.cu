// W1A1 convolution on sm_90a, warp-specialised: the wgmma GEMM, mask terms and epilogue of
// kernels/binary_conv_wgmma.cu, with the im2col gather taken out of the consumer warps.
//
// Why: in binary_conv_wgmma.cu every warp gathers, multiplies and runs the epilogue, and two CTA
// barriers a tile keep them in step. ncu on an H200 (session 27, batch 256, SignPack): on
// ImageNet ResNet-18's 256-channel layer the issue slots are 34% busy and the tensor core ~16%,
// the warps stalled on the CTA barriers (17% of samples), on shared-memory results (23%, most of
// them the gather's copy-list reads) and on fixed-latency dependencies (17%); the gather and the
// row geometry are ~17% of a tile's instructions. Here:
//   - producer warps (one a consumer warpgroup) work out each tile's 64 rows (row geometry, E12's
//     tap mask) and gather them by cp.async into a ring of `nstages` activation tiles; a tile is
//     published on its stage's `full` mbarrier once its copies have landed (cp.async.wait_group,
//     then the proxy fence that lets wgmma read them, then the arrival; kAsyncPublish, an A/B
//     variant not yet measured: an arrival the copies complete, without waiting for them);
//   - kWG consumer warpgroups, each with its 64-channel slice of weights in shared memory, wait
//     on `full`, issue the tile's k256 steps as one wgmma group, release the stage on `empty`
//     once their MMAs are done, and run the epilogue; no CTA barrier after the prologue, so a
//     warpgroup's epilogue overlaps the other warpgroup's (and the other CTAs') MMAs and the
//     producer's next gathers.
// The modes whose epilogue reads a residual row ahead (ResidualSignPack) or computes a fused
// shortcut (ShortcutSignPack) stay on binary_conv_wgmma.cu.
// Measured on an H200 (benchmarks/results/2026-12-04-h200-session27.txt): ImageNet ResNet-18's
// 64/128/256-channel layers 5/7/10% faster than binary_conv_wgmma.cu's kernel (3.2-3.8x cuDNN
// bf16). At 256 channels still latency-bound (37% of issue slots busy): the producers set the pace,
// each waiting out its tile's copies before publishing it.
//
// Shared-memory operand layout and copy list: kernels/binary_conv_wgmma_common.cuh.
#include <cstdlib>
#include <cstring>

#include "kernels/binary_conv_common.cuh"
#include "kernels/binary_conv_wgmma_common.cuh"
#include "kernels/cuda_common.h"
#include "kernels/persistent_grid.cuh"
#include "kernels/ptx.cuh"

namespace mdq::kernels::binary {
namespace {

using ptx::smem_u32;
using namespace wgmma;

constexpr int kMaxStages = 8;

// The producer: one warp a consumer warpgroup (kWG = 1: two rows a lane; 2: one).
template <int kWG>
constexpr int kProducers = 32 * kWG;

// KS = 3: 3x3 taps unrolled in the row geometry; 0: any size. UW: words a cp.async (4, 2 or 1,
// as binary_conv_wgmma.cu picks). kWG consumer warpgroups, slice blockIdx.y * kWG + wg each.
// kAsyncPublish: see the top of the file.

template <int KS, int UW, int kWG, bool kAsyncPublish>
__global__ void __launch_bounds__(kWarpgroup* kWG + kProducers<kWG>, kWG == 1 ? 5 : 2)
    binary_conv_ws_kernel(BinaryConvArgs args, Geometry g, int steps, int nstages) {
#ifdef MDQ_WGMMA_AVAILABLE
  constexpr int kConsumers = kWarpgroup * kWG, kProducer = kProducers<kWG>, kRowsEach = kRows / kProducer;
  extern __shared__ __align__(128) uint8_t smem[];
  uint8_t* As = smem;                                        // [nstages][steps] activation tiles
  uint8_t* Bs_all = As + nstages * steps * kAStep;           // [kWG][steps] weights of the slices
  Copy* copies = reinterpret_cast<Copy*>(Bs_all + kWG * steps * kBStep);  // [Ktot / UW]
  __shared__ EpilogueTablesFor<KS == 3 ? 9 : 32> tables_all[kWG];
  __shared__ uint32_t masks[kMaxStages][kRows];              // each stage's rows' tap masks
  __shared__ __align__(8) uint64_t bars[2 * kMaxStages];     // full[nstages], then empty

  const int tid = threadIdx.x, lane = tid & 31;
  const bool producer = tid >= kConsumers;
  // (wg broadcast from lane 0: warp-uniform, so the weights' descriptor stays in uniform registers)
  const int wg = kWG == 1 ? 0 : __shfl_sync(0xffffffffu, min(tid / kWarpgroup, kWG - 1), 0),
            wtid = tid - wg * kWarpgroup, warp = wtid >> 5, gq = lane >> 2;
  const int n0 = (blockIdx.y * kWG + wg) * kCols;
  uint8_t* Bs = Bs_all + wg * steps * kBStep;
  auto& tables = tables_all[wg];
  // Every thread calls (the tables' loader holds CTA barriers); the producer's index is past
  // every loop bound, so it only meets the barriers.
  load_epilogue_tables(tables, args, g, n0, producer ? 1 << 20 : wtid, kWarpgroup);
  const uint32_t full0 = smem_u32(bars), empty0 = full0 + 8 * kMaxStages;
  if (tid == 0)
    for (int s = 0; s < nstages; ++s) {
      ptx::mbarrier_init(full0 + 8 * s, kProducer);
      ptx::mbarrier_init(empty0 + 8 * s, kConsumers);
    }
  // The slice's weights and ones column, one consumer thread a GEMM column: binary_conv_wgmma.cu's
  // staging without its shortcut step, written out again. (Shared through one helper, ptxas
  // allocated this kernel's two-warpgroup instantiations' registers differently: 750-1130 of ~4000
  // SASS instructions changed, a form not measured. This one is the one measured.)
  const int kwords = steps * 8;
  if (!producer) {
    const uint32_t b_base = smem_u32(Bs);
    for (int p = wtid; p < kN; p += kWarpgroup) {
      const int column = operand_offset<kN>(0, p, 0);
      if (p >= kCols) {
        for (int k = 0; k < kwords; k += UW)
          for (int u = 0; u < UW; ++u)
            *reinterpret_cast<uint32_t*>(Bs + column + operand_offset<kN>(k >> 3, 0, k & 7) + 4 * u) =
                p == kCols && k < g.Ktot ? ~0u : 0u;
        continue;
      }
      const int o = n0 + slice_channel(p, args.mode);
      const bool channel = o < g.O;
      const uint32_t* w_row = args.w + (channel ? (long long)o * g.Ktot : 0);
      for (int k = 0; k < kwords; k += UW)
        ptx::cp_async_gather<4 * UW>(b_base + column + operand_offset<kN>(k >> 3, 0, k & 7), w_row, k,
                                     channel && k < g.Ktot);
    }
  }
  const int ncopies = g.Ktot / UW;
  for (int i = tid; i < ncopies; i += blockDim.x) {
    const int k = i * UW;
    const int2 ot = k_word_source(g, k);
    copies[i] = Copy{ot.x, static_cast<int>(1u << ot.y), operand_offset<kRows>(k >> 3, 0, k & 7), 0};
  }
  ptx::cp_async_commit();  // (wait_group waits for committed groups only)
  ptx::cp_async_wait<0>();
  ptx::fence_proxy_async_shared();
  __syncthreads();  // tables, weights, copy list and barriers are in; no CTA barrier after this

  const int tiles = (g.M + kRows - 1) / kRows;
  if (producer) {
    // Rows p + kProducer i of each tile (p: the thread's index among the producers). Stage
    // k % nstages holds the CTA's k-th tile; its (k / nstages)-th refill waits for the consumers'
    // release of the one before (empty phase k / nstages - 1).
    const int p = tid - kConsumers;
    uint32_t a_row[kRowsEach];
#pragma unroll
    for (int i = 0; i < kRowsEach; ++i) a_row[i] = smem_u32(As) + operand_offset<kRows>(0, p + kProducer * i, 0);
    int stage = 0;
    uint32_t refill_parity = 1;  // (the first pass over the ring waits for nothing)
    int k = 0;
    for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x, ++k) {
      if (k >= nstages) ptx::mbarrier_wait(empty0 + 8 * stage, refill_parity);
      Row row[kRowsEach];
      const uint32_t* src[kRowsEach];
#pragma unroll
      for (int i = 0; i < kRowsEach; ++i) {
        row[i] = row_geometry<KS, false>(args, g, tile * kRows + p + kProducer * i);
        masks[stage][p + kProducer * i] = row[i].mask;
        src[i] = args.x + row[i].base;  // only read at taps inside the image (the base may point before x)
      }
      const uint32_t off = stage * steps * kAStep;
      for (int j = 0; j < ncopies; ++j) {
        const Copy c = copies[j];
#pragma unroll
        for (int i = 0; i < kRowsEach; ++i)
          ptx::cp_async_gather<4 * UW>(a_row[i] + off + c.dst, src[i], c.src,
                                       (row[i].mask & static_cast<uint32_t>(c.tap_bit)) != 0u);
      }
      if constexpr (kAsyncPublish) {
        // The tile is published when its copies land (an arrival the copies complete) and its
        // masks are stored (a plain arrival); the producer moves on at once. The consumers fence
        // the async proxy after their wait.
        ptx::cp_async_mbarrier_arrive(full0 + 8 * stage);
        ptx::mbarrier_arrive(full0 + 8 * stage);
      } else {
        // Published once landed (the producer waits out the copies' latency while the consumers
        // work on the stages before), made visible to wgmma's async-proxy reads first.
        ptx::cp_async_commit();
        ptx::cp_async_wait<0>();
        ptx::fence_proxy_async_shared();
        ptx::mbarrier_arrive(full0 + 8 * stage);
      }
      if (++stage == nstages) stage = 0, refill_parity ^= 1u;
    }
    if constexpr (kAsyncPublish) {  // (nothing of this thread's left in flight when it exits)
      ptx::cp_async_commit();
      ptx::cp_async_wait<0>();
    }
    return;
  }

  // Consumers.
  const uint64_t a_desc0 = ptx::wgmma_desc(smem_u32(As), 16 * kRows, 128);
  const uint64_t b_desc0 = ptx::wgmma_desc(smem_u32(Bs), 16 * kN, 128);
  int32_t acc[10][4] = {};
  int stage = 0;
  uint32_t parity = 0;
  for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    ptx::mbarrier_wait(full0 + 8 * stage, parity);
    if constexpr (kAsyncPublish) ptx::fence_proxy_async_shared();  // the producers' copies, for wgmma
    ptx::wgmma_fence();  // acc was last written by the epilogue
    const uint64_t a_desc = ptx::wgmma_desc_advance(a_desc0, stage * steps * (kAStep >> 4));
    for (int s = 0; s < steps; ++s)
      ptx::wgmma_b1_m64n80k256(acc, ptx::wgmma_desc_advance(a_desc, s * (kAStep >> 4)),
                               ptx::wgmma_desc_advance(b_desc0, s * (kBStep >> 4)), s > 0);
    ptx::wgmma_commit();
    const int local0 = 16 * warp + gq;
    const uint32_t mask[2] = {masks[stage][local0], masks[stage][local0 + 8]};
    ptx::wgmma_wait<0>();
    ptx::mbarrier_arrive(empty0 + 8 * stage);  // the stage's tile and masks are read
    if (++stage == nstages) stage = 0, parity ^= 1u;

    // popc(A&M) of row 8 h + g is column 64, held by lane 4 g (acc[8][2 h]).
    auto& channels = reinterpret_cast<int32_t(&)[8][4]>(acc);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int popc_a = __shfl_sync(0xffffffffu, acc[8][2 * h], lane & ~3);
      const int r = 2 * popc_a - __popc(mask[h]) * g.C;
      epilogue_row(channels, h, tile * kRows + local0 + 8 * h, r, mask[h], tables, args, g, n0, nullptr);
    }
  }
#endif
}

// The most stages (up to kMaxStages) that keep as many CTAs an SM as two stages do; 0 where
// fewer than `min_ctas` CTAs of two stages fit an SM.
template <class Kernel>
int stages_for(Kernel kernel, int threads, int steps, int ktot, int wgs, int min_ctas) {
  const int ctas = resident_ctas(kernel, threads, smem_bytes(steps, ktot, 2, wgs));
  if (ctas < min_ctas) return 0;
  int n = 2;
  while (n < kMaxStages && smem_bytes(steps, ktot, n + 1, wgs) <= 200 * 1024 &&
         resident_ctas(kernel, threads, smem_bytes(steps, ktot, n + 1, wgs)) == ctas)
    ++n;
  return n;
}

// min_ctas: 2 unless forced. With one CTA an SM (ResNet-18's 512-channel layers: 90 KB of
// weights for two warpgroups, 36 KB a stage) it measured no faster than binary_conv_wgmma.cu's
// kernel, and 6% slower on CIFAR's 4x4 maps (session 27).
template <int KS, int UW, int kWG, bool kAsyncPublish>
bool launch(const BinaryConvArgs& a, const Geometry& g, int steps, int min_ctas) {
  const auto kernel = binary_conv_ws_kernel<KS, UW, kWG, kAsyncPublish>;
  const int threads = kWarpgroup * kWG + kProducers<kWG>;
  if (smem_bytes(steps, g.Ktot, 2, kWG) > 200 * 1024) return false;
  const int nstages = stages_for(kernel, threads, steps, g.Ktot, kWG, min_ctas);
  if (nstages == 0) return false;
  const size_t smem = smem_bytes(steps, g.Ktot, nstages, kWG);
  const long long slices = (g.O + kWG * kCols - 1) / (kWG * kCols);
  const dim3 grid = persistent_grid(kernel, threads, smem, (g.M + kRows - 1) / kRows, slices);
  kernel<<<grid, threads, smem, cuda::stream()>>>(a, g, steps, nstages);
  CUDA_CHECK_LAUNCH();
  return true;
}

template <int KS, int UW>
bool launch_shape(const BinaryConvArgs& a, const Geometry& g, int steps, bool forced) {
  const bool one = warpgroups_asked() == 1;
  const int min_ctas = forced ? 1 : 2;
  // MDQ_W1A1_WS_PUBLISH=async: the producers publish a tile by an arrival its copies complete,
  // without waiting for them (an A/B variant, not yet measured).
  const char* publish = std::getenv("MDQ_W1A1_WS_PUBLISH");
  if (publish && std::strcmp(publish, "async") == 0)
    return g.O > kCols && !one ? launch<KS, UW, 2, true>(a, g, steps, min_ctas)
                               : launch<KS, UW, 1, true>(a, g, steps, min_ctas);
  return g.O > kCols && !one ? launch<KS, UW, 2, false>(a, g, steps, min_ctas)
                             : launch<KS, UW, 1, false>(a, g, steps, min_ctas);
}

}  // namespace

bool conv2d_wgmma_ws(const BinaryConvArgs& a, const Geometry& g, bool forced) {
#ifndef MDQ_HAS_SM90A
  (void)a, (void)g, (void)forced;
  return false;
#else
  if (a.mode == BinaryEpilogue::ResidualSignPack || a.mode == BinaryEpilogue::ShortcutSignPack) return false;
  const int steps = (g.Ktot + 7) / 8;
  return with_layer_shape(a, g, [&](auto ks, auto uw) {
    return launch_shape<decltype(ks)::value, decltype(uw)::value>(a, g, steps, forced);
  });
#endif
}

}  // namespace mdq::kernels::binary

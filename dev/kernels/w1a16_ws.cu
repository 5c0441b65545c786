// W1A16 / W2A16 convolution on Hopper's warpgroup MMA, warp-specialised (sm_90a): the GEMM of
// kernels/w1a16_wgmma.cu, D[o][m] = sum_k W[o][k] X[m][k] (weights as wgmma's register A, built
// from their packed bits; gathered activations as its B in the 128-byte swizzle), with the
// gather moved out of the MMA warps:
//   - warpgroup 0, the producer, gathers chunk after chunk (64 channels of one tap for the tile's
//     pixels, plus the tile's packed weight words of that chunk) into kStages stages with 16-byte
//     cp.async. A stage is handed over through two mbarriers: `full` (128 producer arrivals) and
//     `empty` (one arrival per consumer thread). A producer thread arrives on `full` kLag chunks
//     after it issued that chunk's copies, once cp.async.wait_group has seen them land and a
//     proxy fence has made them visible to wgmma (the async proxy): kLag chunks of copies stay in
//     flight, and no thread ever waits at a CTA barrier in the main loop;
//   - warpgroups 1 and 2, the consumers, wait on `full`, build their A fragments from the
//     stage's weight words (weight_fragments), issue the chunk's wgmmas, wait for them
//     and release the stage on `empty`;
//   - setmaxnreg moves registers from the producer (kProducerRegs) to the consumers, whose
//     accumulators are up to 128 floats a thread.
// Tiles (CTA channels x pixels; each consumer warpgroup's share):
//   - 64 x 128: both consumers the 64 channels, 64 pixels each (N = 64); two CTAs an SM;
//   - 128 x 256: each consumer a 64-channel block, all 256 pixels (N = 256); one CTA an SM;
//   - 256 x 128: each consumer two 64-channel blocks, all 128 pixels (N = 128, two wgmmas a k16
//     step sharing B); one CTA an SM, half the activation traffic per MAC of 128 x 256.
// The epilogue (scale, shift, ReLU, NHWC out through a shared-memory tile) is the wgmma kernel's.
//
// Status: slower than the default kernels/w1a16_wgmma.cu on every ImageNet ResNet-18 layer
// (H200, batch 256, benchmarks/results/2026-12-03-h200-session25.txt call 3, with the shared A
// build of weight_fragments: 278/508-514/565/528-531 TFLOPS against the default's 283-285/
// 542-545/608-612/630-647, and the default's one-warpgroup 64-channel tile 378 in call 5), about
// even on CIFAR's layers of 128 and 256 channels. Racecheck is clean with one `empty` arrival per
// consumer thread (with one a warp, after __syncwarp, it reported the producer's weight copies
// racing the consumers' reads of them: 175 hazards). ncu: 33-50% of issue slots busy with 0.5-1
// eligible warp a scheduler; the two consumer warpgroups wait on the same `full` barrier and then on their
// MMAs, so they run in step and the tensor cores idle while both build A. Next here: a
// persistent grid (epilogue overlapped with the next tile's chunks), consumers that release a
// stage one chunk later (wgmma.wait_group 1, two A sets), and a second producer warpgroup for the
// 64-channel tile.
#include <cuda_bf16.h>

#include "dev/kernels/w1a16_ws.h"
#include "kernels/cuda_common.h"
#include "kernels/ptx.cuh"
#include "kernels/w1a16_internal.cuh"

namespace mdq::kernels::w1a16 {
namespace {

using ptx::smem_u32;

constexpr int kThreads = 384, kProducerThreads = 128, kConsumerThreads = 256;
constexpr int kProducerRegs = 56;

// CHB = 64-channel blocks a CTA (1, 2 or 4).
template <int CHB, bool TERNARY>
struct WsTile {
  static constexpr int kBlocksPerWg = CHB == 4 ? 2 : 1;   // 64-channel blocks a consumer warpgroup
  static constexpr int kN = CHB == 1 ? 64 : CHB == 2 ? 256 : 128;  // wgmma N: a consumer's pixels
  static constexpr int kPixels = CHB == 1 ? 2 * kN : kN;
  static constexpr int kChannels = 64 * CHB;
  static constexpr int kCtasPerSm = CHB == 1 ? 2 : 1;
  // Registers: the launch bound gives every thread 168 (one CTA an SM) or 80 (two); the producer
  // drops to kProducerRegs, which lets each consumer take the rest, rounded down to a multiple of 8.
  static constexpr int kLaunchRegs = kCtasPerSm == 1 ? 168 : 80;
  static constexpr int kConsumerRegs =
      (kLaunchRegs * kThreads - kProducerRegs * kProducerThreads) / kConsumerThreads / 8 * 8;
  static constexpr int kPlanes = TERNARY ? 2 : 1;
  static constexpr int kARows = kPixels * 128;  // a stage's activations: 64 bf16 a pixel
  static constexpr int kStage = (kARows + kPlanes * kChannels * 8 + 1023) / 1024 * 1024;
  static constexpr int kSmemBudget = kCtasPerSm == 1 ? 220 * 1024 : 108 * 1024;
  static constexpr int kStages = (kSmemBudget - 1024) / kStage;
  static constexpr int kLag = kStages / 2 - 1;  // chunks a producer thread arrives behind its copies
  static constexpr int kOutStride = kChannels + 4;  // floats a pixel of the epilogue's tile
  static constexpr int kBytes = kStages * kStage + 1024;  // + the base's alignment
  static_assert(kLag >= 1 && kLag < kStages, "copies in flight and stages to spare");
  static_assert(kPixels * kOutStride * 4 <= kStages * kStage, "the epilogue's tile fits the stages");
  static_assert(kBlocksPerWg * kN / 2 <= 128, "accumulators: at most 128 floats a thread");
};

template <int CHB, bool TERNARY>
__global__ void __launch_bounds__(kThreads, WsTile<CHB, TERNARY>::kCtasPerSm)
    w1a16_ws_kernel(W1A16ConvArgs args, Geometry g, int channel_tiles) {
#ifdef MDQ_WGMMA_AVAILABLE
  using T = WsTile<CHB, TERNARY>;
  constexpr int kStages = T::kStages, kPixels = T::kPixels, BPW = T::kBlocksPerWg, NJ = T::kN / 8;
  extern __shared__ uint8_t smem_raw[];
  __shared__ uint64_t full[kStages], empty[kStages];
  __shared__ int2 rows[kPixels];  // the tile's gather_row table
  uint8_t* const smem = align_1024(smem_raw);
  const uint32_t smem_base = smem_u32(smem);

  const int tid = threadIdx.x, wg = tid >> 7;
  // Channel tiles vary fastest, so the CTAs that read one pixel tile run together (L2 reuse).
  const long long m0 = static_cast<long long>(blockIdx.x / channel_tiles) * kPixels;
  const int n0 = static_cast<int>(blockIdx.x % channel_tiles) * T::kChannels;

  for (int r = tid; r < kPixels; r += kThreads) rows[r] = gather_row(g, m0 + r);
  if (tid == 0)
    for (int s = 0; s < kStages; ++s) {
      ptx::mbarrier_init(smem_u32(&full[s]), kProducerThreads);
      ptx::mbarrier_init(smem_u32(&empty[s]), kConsumerThreads);
    }
  __syncthreads();

  const int nk = g.T * g.CB;
  if (wg == 0) {
    // ---- Producer: chunk q into stage q % kStages once its previous chunk (q - kStages) is
    // released; arrival on `full` for chunk q - kLag.
    ptx::setmaxnreg_dec<kProducerRegs>();
    const ChunkGather<kPixels, kProducerThreads> gather(rows, g, tid);
    const WeightCopies<T::kChannels, T::kPlanes, kProducerThreads> weights(args, g, n0, tid);
    auto publish = [&](int q) {  // this thread's copies of chunk q have landed (wait_group before)
      ptx::fence_proxy_async_shared();
      ptx::mbarrier_arrive(smem_u32(&full[q % kStages]));
    };
    ChunkWalk walk;
    for (int q = 0; q < nk; ++q) {
      const int stage = q % kStages;
      if (q >= kStages) ptx::mbarrier_wait(smem_u32(&empty[stage]), (q / kStages - 1) & 1);
      const uint32_t st = smem_base + stage * T::kStage;
      gather.copy(st, args.x, g, walk.kh, walk.kw, walk.cb);
      weights.copy(st + T::kARows, g, walk.kh, walk.kw, walk.cb);
      ptx::cp_async_commit();
      walk.next(g);
      if (q >= T::kLag) {
        ptx::cp_async_wait<T::kLag>();
        publish(q - T::kLag);
      }
    }
    ptx::cp_async_wait<0>();
    for (int q = max(nk - T::kLag, 0); q < nk; ++q) publish(q);
    return;
  }

  // ---- Consumers.
  ptx::setmaxnreg_inc<T::kConsumerRegs>();
  const int ct = tid - kProducerThreads, cw = ct >> 7, warp = (ct >> 5) & 3, lane = ct & 31;
  const int gq = lane >> 2, tq = lane & 3;
  // This warpgroup's first 64-channel block and first pixel of the CTA's tile.
  const int block0 = CHB == 1 ? 0 : cw * BPW, pixel0 = CHB == 1 ? T::kN * cw : 0;

  float acc[BPW][NJ][4];
#pragma unroll
  for (int b = 0; b < BPW; ++b) {
#pragma unroll
    for (int j = 0; j < NJ; ++j) acc[b][j][0] = acc[b][j][1] = acc[b][j][2] = acc[b][j][3] = 0.f;
    ptx::fence_operands(acc[b]);
  }
  uint32_t a[BPW][4][4];
  for (int q = 0; q < nk; ++q) {
    const int stage = q % kStages;
    ptx::mbarrier_wait(smem_u32(&full[stage]), (q / kStages) & 1);
    const uint8_t* st = smem + stage * T::kStage;
#pragma unroll
    for (int b = 0; b < BPW; ++b)
      weight_fragments<T::kChannels, TERNARY>(st + T::kARows, (block0 + b) * 64 + 16 * warp + gq, tq, a[b]);
    const uint64_t bsm = ptx::wgmma_desc_sw128(smem_base + stage * T::kStage + pixel0 * 128);
    ptx::wgmma_fence();
#pragma unroll
    for (int s = 0; s < 4; ++s)
#pragma unroll
      for (int b = 0; b < BPW; ++b) ptx::wgmma_bf16_k16_rs(acc[b], a[b][s], ptx::wgmma_desc_advance(bsm, 2 * s));
    ptx::wgmma_commit();
    ptx::wgmma_wait<0>();
    ptx::mbarrier_arrive(smem_u32(&empty[stage]));
  }
#pragma unroll
  for (int b = 0; b < BPW; ++b) ptx::fence_operands(acc[b]);
  // Both consumer warpgroups are done with the stages (and the producer's copies all landed
  // before its last arrivals): the stages hold the epilogue's tile now.
  ptx::named_barrier(1, kConsumerThreads);
  float* tile = reinterpret_cast<float*>(smem);
#pragma unroll
  for (int b = 0; b < BPW; ++b)
    acc_to_tile<T::kOutStride>(acc[b], tile, (block0 + b) * 64 + 16 * warp, pixel0, n0, args, g, gq, tq);
  ptx::named_barrier(1, kConsumerThreads);
  store_tile<kPixels, T::kChannels, T::kOutStride>(tile, m0, n0, args, g, ct, kConsumerThreads);
#endif
}

template <int CHB, bool TERNARY>
void launch(const W1A16ConvArgs& a, const Geometry& g) {
  using T = WsTile<CHB, TERNARY>;
  launch_tiles<w1a16_ws_kernel<CHB, TERNARY>>(kThreads, T::kBytes, T::kPixels, T::kChannels, a, g);
}

}  // namespace
}  // namespace mdq::kernels::w1a16

namespace mdq::dev {

bool w1a16_ws_conv2d(const kernels::W1A16ConvArgs& a, int tile_channels) {
  using namespace kernels::w1a16;
  const Geometry g = make_geometry(a);
  if (!sm90a_kernels_apply(a, g)) return false;
  if (g.M <= 0 || g.O <= 0) return true;  // an empty output: nothing to launch
  if (tile_channels == 0) tile_channels = g.O <= 64 ? 64 : g.O <= 128 ? 128 : 256;
  const bool ternary = a.nonzero != nullptr;
  switch (tile_channels) {
    case 64: ternary ? launch<1, true>(a, g) : launch<1, false>(a, g); break;
    case 128: ternary ? launch<2, true>(a, g) : launch<2, false>(a, g); break;
    default: ternary ? launch<4, true>(a, g) : launch<4, false>(a, g); break;
  }
  return true;
}

}  // namespace mdq::dev

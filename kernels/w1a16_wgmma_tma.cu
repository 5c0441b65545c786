// W1A16 convolution on sm_90a on 256-pixel tiles, the activations brought in by the TMA engine in
// its im2col mode: the implicit GEMM of kernels/w1a16_wgmma.cu (weights as wgmma's register A
// built from their packed bits, activations as B in the 128-byte swizzle, DESIGN.md E12),
//   D[o][m] = sum_k W[o][k] X[m][k],  o = output channel (wgmma M), m = output pixel (wgmma N),
// with a CTA of two warpgroups on 128 channels x 256 pixels (wgmma N = 256, so each A build
// serves twice the pixels of the cp.async kernel's), one CTA an SM (199 registers a thread), and
// a chunk's gather (256 pixels x 64 channels of one tap) one TMA instruction.
//
// Where it runs (conv2d_wgmma_tma): binary weights, O > 64, a k loop of at least 36 chunks and a
// grid whose last wave is at least 90% full. Measured on an H200 at batch 256 (session 26, calls
// 2-4; benchmarks/results/2026-12-03-h200-session26.txt): 588-620 TFLOPS on ImageNet's 256-channel
// layer, against 609-612 for the cp.async kernel as session 25 measured it (this session's
// in-process runs had that kernel at 562-577, from a build whose SASS a refactor had changed, since
// undone), and 603-618 on CIFAR's, against 573-576 (+5-8%); slower where the k loop is short or the
// grid fills its last wave poorly, because with one CTA an SM nothing overlaps a tile's pipeline
// fill and epilogue: ImageNet 128 channels (18 chunks) 462-470 against 527-545, 512 channels (1.5
// waves) 540-554 against 607-647. The same kernel on 128-pixel tiles at two CTAs an SM (4, 5 or 6
// stages) and on 256-pixel one-warpgroup tiles for O <= 64 measured no faster than the cp.async
// kernel on any layer, so they are not kept.
//
// Why TMA: in the cp.async kernel the copies were 66 of a chunk's ~160 instructions a warp, and the
// warps waited most at the per-chunk CTA barrier that publishes them (ncu, session 25). Here one
// thread issues a chunk's copy, the TMA engine walks the pixels (padding and the rows past the
// last image come back as zeros) and writes them in the swizzle wgmma reads, and each stage has
// a pair of mbarriers instead of the CTA barrier:
//   full[s]:  the TMA's bytes have landed (one arrival with the byte count, then the bytes);
//   empty[s]: every consumer thread's MMAs on the stage are done (one arrival each).
// Thread 0 is the producer as well as a consumer: after issuing chunk q's MMAs it refills the
// stage of chunk q - 1 (once empty) with chunk q + kStages - 1, so kStages - 1 chunks are in
// flight while chunk q is multiplied.
//
// The weights do not pass through shared memory: a thread's two rows of packed words (4 words a
// chunk) are read from global memory (L2) two chunks ahead into registers.
//
// The tensor map (cuTensorMapEncodeIm2col over the NHWC input, dims C, W, H, N): bounding box
// from -pad to pad - (K - 1) past the far edge, so that its corner walks the (0, 0) taps of the
// output pixels at the conv's stride ((W + 2 pad - K) / stride + 1 of them, the output width);
// a chunk of tap (kh, kw) is the box at filter offset (kw, kh); channelsPerPixel 64 (a 128-byte
// row), pixelsPerColumn 256 (the tile). Where the driver refuses the map the cp.async kernel runs.
#include <cuda.h>           // CUtensorMap
#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeIm2col

#include <algorithm>

#include "kernels/cuda_common.h"
#include "kernels/driver_entry.h"
#include "kernels/ptx.cuh"
#include "kernels/w1a16_internal.cuh"

namespace mdq::kernels::w1a16 {
namespace {

using ptx::smem_u32;

// The tile: two warpgroups, each 64 of the CTA's 128 channels and all 256 pixels; six stages.
constexpr int kThreads = 256, kPixels = 256, kChannels = 128, kStages = 6, NJ = kPixels / 8;
constexpr int kStageBytes = kPixels * 128;  // a stage: the pixels x 64 bf16 of one tap
constexpr int kOutStride = kChannels + 4;   // floats a pixel of the epilogue's tile
constexpr int kBytes = std::max(kStages * kStageBytes, kPixels * kOutStride * 4) + 1024;  // + alignment

// A thread's two rows of packed weights (output channels `channel` and channel + 8, past O the
// last one: their outputs are not stored) in global memory, read a chunk at a time.
struct WeightRows {
  const uint32_t* row[2];
  __device__ __forceinline__ WeightRows(const W1A16ConvArgs& a, const Geometry& g, int channel) {
#pragma unroll
    for (int r = 0; r < 2; ++r) row[r] = a.sign + static_cast<long long>(min(channel + 8 * r, g.O - 1)) * g.Ktot;
  }
  // Chunk c's words 2 cb and 2 cb + 1 of its tap. Where the second is past the tap's Cw words its
  // channels are past C, whose activations the TMA fills with zeros: any word will do, so the
  // first is read again (no read past the row).
  __device__ __forceinline__ WeightWords<false> load(const ChunkWalk& c, const Geometry& g) const {
    const int w0 = (c.kh * g.KW + c.kw) * g.Cw + 2 * c.cb, w1 = 2 * c.cb + 1 < g.Cw ? w0 + 1 : w0;
    WeightWords<false> words;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      words.w[0][r][0] = __ldg(row[r] + w0);
      words.w[0][r][1] = __ldg(row[r] + w1);
    }
    return words;
  }
};

__global__ void __launch_bounds__(kThreads, 1)
    w1a16_tma_kernel(const __grid_constant__ CUtensorMap x_map, W1A16ConvArgs args, Geometry g, int channel_tiles) {
#ifdef MDQ_WGMMA_AVAILABLE
  extern __shared__ uint8_t smem_raw[];
  uint8_t* const smem = align_1024(smem_raw);
  __shared__ __align__(8) uint64_t bars[2 * kStages];  // full[kStages], then empty[kStages]

  const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31, gq = lane >> 2, tq = lane & 3;
  // Channel tiles vary fastest, so the CTAs that read one pixel tile run together (L2 reuse).
  const long long m0 = static_cast<long long>(blockIdx.x / channel_tiles) * kPixels;
  const int n0 = static_cast<int>(blockIdx.x % channel_tiles) * kChannels;
  const uint32_t smem_base = smem_u32(smem), full0 = smem_u32(bars), empty0 = full0 + 8 * kStages;

  if (tid == 0)
    for (int s = 0; s < kStages; ++s) {
      ptx::mbarrier_init(full0 + 8 * s, 1);
      ptx::mbarrier_init(empty0 + 8 * s, kThreads);
    }
  __syncthreads();

  const int nk = g.T * g.CB;
  // Producer (thread 0): the tile's first output pixel as the map's coordinates of its (0, 0)
  // tap; the walk of the chunks it loads, into stage `pstage`.
  ChunkWalk produced;
  int pstage = 0, pn = 0, pw = 0, ph = 0;
  // The parity of the `empty` phase that frees pstage: a stage's k-th release (from 0) completes
  // its phase k. The prologue fills every stage without waiting, and its wrap flips this to 0.
  uint32_t pphase = 1;
  auto produce = [&](bool wait_empty) {
    if (wait_empty) ptx::mbarrier_wait(empty0 + 8 * pstage, pphase);
    ptx::mbarrier_arrive_expect_tx(full0 + 8 * pstage, kStageBytes);
    ptx::tma_load_im2col_4d(smem_base + pstage * kStageBytes, &x_map, 64 * produced.cb, pw, ph, pn,
                            static_cast<uint16_t>(produced.kw), static_cast<uint16_t>(produced.kh),
                            full0 + 8 * pstage);
    produced.next(g);
    if (++pstage == kStages) pstage = 0, pphase ^= 1u;
  };
  if (tid == 0) {
    const int ohw = g.OH * g.OW;
    pn = static_cast<int>(m0 / ohw);
    const int rem = static_cast<int>(m0 - static_cast<long long>(pn) * ohw), oh = rem / g.OW;
    ph = oh * g.stride - g.pad;
    pw = (rem - oh * g.OW) * g.stride - g.pad;
    for (int s = 0; s < kStages && s < nk; ++s) produce(false);
  }

  // Consumers: this thread's A rows 16 warp + gq (+ 8) of the warpgroup's block; their weight
  // words two chunks ahead.
  const int a_row = wg * 64 + 16 * warp + gq;
  const WeightRows rows(args, g, n0 + a_row);
  ChunkWalk ahead;
  WeightWords<false> words = rows.load(ahead, g), next = words;
  ahead.next(g);
  if (nk > 1) next = rows.load(ahead, g);
  ahead.next(g);

  float acc[NJ][4];
#pragma unroll
  for (int j = 0; j < NJ; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
  ptx::fence_operands(acc);

  int stage = 0;
  uint32_t phase = 0;
  // One A register set: chunk q + 1's is built once chunk q's MMAs are done. (A variant with two
  // sets, chunk q + 1's built while chunk q's MMAs run, measured 5-8% slower: session 27.)
  uint32_t a[4][4];
  for (int q = 0; q < nk; ++q) {
    weight_fragments<false>(words, tq, a);
    ptx::mbarrier_wait(full0 + 8 * stage, phase);
    // (k16 step s starts 32 bytes further on in the 128-byte swizzled rows: 2 descriptor units)
    const uint64_t b = ptx::wgmma_desc_sw128(smem_base + stage * kStageBytes);
    ptx::wgmma_fence();
#pragma unroll
    for (int s = 0; s < 4; ++s) ptx::wgmma_bf16_k16_rs(acc, a[s], ptx::wgmma_desc_advance(b, 2 * s));
    ptx::wgmma_commit();
    // While they run: chunk q - 1's stage refilled with chunk q + kStages - 1, chunk q + 2's words.
    if (tid == 0 && q >= 1 && q + kStages - 1 < nk) produce(true);
    words = next;
    if (q + 2 < nk) next = rows.load(ahead, g);
    ahead.next(g);
    ptx::wgmma_wait<0>();
    ptx::mbarrier_arrive(empty0 + 8 * stage);
    if (++stage == kStages) stage = 0, phase ^= 1u;
  }
  ptx::fence_operands(acc);
  __syncthreads();  // every warpgroup is done with the stages: they hold the epilogue's tile now

  float* tile = reinterpret_cast<float*>(smem);
  acc_to_tile<kOutStride>(acc, tile, wg * 64 + 16 * warp, 0, n0, args, g, gq, tq);
  __syncthreads();
  store_tile<kPixels, kChannels, kOutStride>(tile, m0, n0, args, g, tid, kThreads);
#endif
}

// The input as the kernel's im2col tensor map (see the top of the file); false where the driver
// has no cuTensorMapEncodeIm2col or refuses these dimensions.
bool make_im2col_map(const W1A16ConvArgs& a, const Geometry& g, CUtensorMap* map) {
  static const auto encode =
      cuda::driver_entry_point<PFN_cuTensorMapEncodeIm2col_v12000>("cuTensorMapEncodeIm2col");
  if (!encode) return false;
  const cuuint64_t e = sizeof(uint16_t);
  const cuuint64_t dims[4] = {cuuint64_t(a.C), cuuint64_t(a.W), cuuint64_t(a.H), cuuint64_t(a.N)};
  const cuuint64_t strides[3] = {a.C * e, cuuint64_t(a.W) * a.C * e, cuuint64_t(a.H) * a.W * a.C * e};  // dims 1-3
  const int lower[2] = {-g.pad, -g.pad}, upper[2] = {g.pad - (g.KW - 1), g.pad - (g.KH - 1)};  // (w, h)
  const cuuint32_t traversal[4] = {1, cuuint32_t(g.stride), cuuint32_t(g.stride), 1};
  return encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 4, const_cast<uint16_t*>(a.x), dims, strides, lower, upper, 64,
                kPixels, traversal, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}
}  // namespace

bool conv2d_wgmma_tma(const W1A16ConvArgs& a, const Geometry& g, bool forced) {
  // The stride is the map's traversal stride (at most 8). The encoder takes the box's corners in
  // [-128, 127] at rank 4 (it refuses others: then the cp.async kernel runs); square kernels only,
  // so that the corners' order in its arrays (w, h here, as CUTLASS passes them) is moot.
  if (a.nonzero || g.O <= 64 || g.stride > 8 || g.KH != g.KW) return false;
  const long long ctas = (g.M + kPixels - 1) / kPixels * ((g.O + kChannels - 1) / kChannels), sms = cuda::sm_count();
  const double last_wave_fill = static_cast<double>(ctas) / ((ctas + sms - 1) / sms * sms);
  if (!forced && (g.T * g.CB < 36 || last_wave_fill < 0.9)) return false;
  CUtensorMap map;
  if (!make_im2col_map(a, g, &map)) return false;
  launch_tiles<w1a16_tma_kernel>(kThreads, kBytes, kPixels, kChannels, a, g, map);
  return true;
}

}  // namespace mdq::kernels::w1a16

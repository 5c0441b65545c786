// W1A1 convolution on Hopper's warpgroup MMA (sm_90a): the same implicit GEMM, mask terms and
// epilogue as the mma.sync kernel (kernels/binary_conv.cu, kernels/binary_conv_common.cuh), with
// `wgmma.mma_async m64n64k256 .b1 .and.popc` (DESIGN.md E12: 15.5 POPS on an H200 against
// mma.sync's ~10; AND+popc, since XOR is emulated on sm_90).
//
// Why it is shaped this way: mma.sync left the W1A1 kernel issue-bound (ncu: ~25 instructions
// per m16n8k256 MMA, where the tensor core allows ~6.7). One wgmma does the work of 32 such
// MMAs per warp, and its operands come from shared memory, so the per-k-step fragment loads go:
//   - a CTA is one warpgroup (128 threads) that owns a 64-channel slice (blockIdx.y); the slice's
//     weights are staged once into shared memory in wgmma's core-matrix layout (all of K);
//   - the CTA walks 64-row tiles (persistent). A tile's activations are gathered (im2col) into
//     shared memory by cp.async, 8 bytes per copy when Cw is even, zero-filled at taps outside
//     the image; the next tile's row geometry and gather run while this tile's MMAs do;
//   - all k256 steps of a tile are issued back to back as one wgmma group; several CTAs per SM
//     keep the tensor core busy while one of them is in its epilogue.
// K past Ktot is zero in the weights, so whatever sits in the activation tile there adds nothing.
//
// Shared-memory operand layout (no swizzle, K-major): per k256 step, 2 x 8 core matrices of
// 8 rows x 16 bytes (128 bits of K); word kk (0..7) of row c of step s is at byte
//   s * 2048 + (kk / 4) * 1024 + (c / 8) * 128 + (c % 8) * 16 + (kk % 4) * 4,
// so core matrices adjacent in K are 1024 B apart (LBO) and adjacent in M/N 128 B apart (SBO).
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "engine/cuda_context.h"
#include "kernels/binary_conv_common.cuh"
#include "kernels/ptx.cuh"

namespace mdq::kernels::binary {
namespace {

using ptx::smem_u32;

constexpr int kThreads = 128, kRows = 64;   // one warpgroup; m64 tiles
constexpr int kStepBytes = 2048;            // one k256 step of a 64-row (or 64-column) operand
constexpr uint32_t kLbo = 1024, kSbo = 128;  // see the layout above

__device__ __forceinline__ int operand_offset(int s, int c, int kk) {
  return s * kStepBytes + (kk >> 2) * 1024 + (c >> 3) * 128 + (c & 7) * 16 + (kk & 3) * 4;
}

// One copy of the gather, the same for every row: word offset from the row's base, the tap's
// mask bit, and the destination's byte offset in the tile (operand_offset without the row part).
struct Copy {
  int src, tap_bit, dst, pad;
};

// KS = 3: 3x3 taps unrolled in the row geometry; 0: any size. UW = words per cp.async (2 when
// Cw is even, so a copy never straddles two taps; else 1). nbuf = 2 activation tile buffers
// (the next tile's gather overlaps this tile's MMAs) or 1 (long K: more CTAs an SM instead).
template <int KS, int UW>
__global__ void __launch_bounds__(kThreads) binary_conv_wgmma_kernel(BinaryConvArgs args, Geometry g, int steps,
                                                                     int nbuf) {
#ifdef MDQ_WGMMA_AVAILABLE
  extern __shared__ __align__(128) uint8_t smem[];
  uint8_t* Bs = smem;                                                  // [steps] weights of the slice
  uint8_t* As = smem + steps * kStepBytes;                             // [nbuf][steps] activation tiles
  Copy* copies = reinterpret_cast<Copy*>(As + nbuf * steps * kStepBytes);  // [Ktot / UW]
  __shared__ EpilogueTables tables;
  __shared__ Row rows[2][kRows];

  const int tid = threadIdx.x, warp = tid >> 5, gq = (tid & 31) >> 2;
  const int n0 = blockIdx.y * kCols;
  load_epilogue_tables(tables, args, g, n0);
  // The slice's weights by cp.async (a plain load-then-store loop would wait out one global
  // latency per word), column p = channel n0 + slice_channel(p), zero past O and past K.
  const int kwords = steps * 8;
  for (int idx = tid; idx < kCols * kwords; idx += kThreads) {
    const int p = idx / kwords, k = idx - p * kwords, o = n0 + slice_channel(p);
    const bool in = o < g.O && k < g.Ktot;
    ptx::cp_async4_zfill(Bs + operand_offset(k >> 3, p, k & 7), in ? args.w + (long long)o * g.Ktot + k : args.w, in);
  }
  const int ncopies = g.Ktot / UW;
  for (int i = tid; i < ncopies; i += kThreads) {
    const int k = i * UW;
    const int2 ot = k_word_source(g, k);
    copies[i] = Copy{ot.x, static_cast<int>(1u << ot.y), operand_offset(k >> 3, 0, k & 7), 0};
  }

  // The gather of one tile into buffer b: two threads a row, alternate copies.
  const int my_row = tid & (kRows - 1), row_off = operand_offset(0, my_row, 0);
  auto stage_a = [&](int b, const Row& row) {
    uint8_t* A = As + b * steps * kStepBytes + row_off;
    const uint32_t* src = args.x + row.base;  // dereferenced only at taps inside the image
    for (int i = tid >> 6; i < ncopies; i += 2) {
      const Copy c = copies[i];
      const bool in = (row.mask & static_cast<uint32_t>(c.tap_bit)) != 0u;
      if (UW == 2) ptx::cp_async8_zfill(A + c.dst, in ? src + c.src : args.x, in);
      else ptx::cp_async4_zfill(A + c.dst, in ? src + c.src : args.x, in);
    }
  };

  // Per tile: the MMAs of tile t are issued, then the rows of tile t + 1 are worked out and its
  // gather is queued (while the tensor core works, with two buffers; after it, with one), then
  // the epilogue of t. Row tables alternate; the barrier at the top of an iteration also frees
  // what the last one read.
  const int tiles = (g.M + kRows - 1) / kRows;
  int tile = blockIdx.x, b = 0;
  if (tile < tiles && tid < kRows) rows[0][tid] = row_geometry<KS>(args, g, tile * kRows + tid);
  __syncthreads();  // tables, copy list and the first tile's rows are in
  if (tile < tiles) stage_a(0, rows[0][my_row]);
  ptx::cp_async_commit();
  const uint64_t a_desc0 = ptx::wgmma_desc(smem_u32(As), kLbo, kSbo), b_desc0 = ptx::wgmma_desc(smem_u32(Bs), kLbo, kSbo);
  constexpr uint64_t kStepDesc = kStepBytes >> 4;  // one k256 step in the descriptor's address field
  int32_t acc[8][4] = {};
  for (; tile < tiles; tile += gridDim.x, b ^= 1) {  // uniform across the CTA
    const int abuf = nbuf == 2 ? b : 0;
    ptx::cp_async_wait<0>();          // this thread's copies of `tile` (and the weights) have landed,
    ptx::fence_proxy_async_shared();  // are visible to wgmma's (async proxy) reads,
    __syncthreads();                  // and so are everyone else's; the last epilogue is done

    ptx::wgmma_fence();  // acc was last written by the epilogue
    const uint64_t a_desc = a_desc0 + static_cast<uint64_t>(abuf * steps) * kStepDesc;
    for (int s = 0; s < steps; ++s)
      ptx::wgmma_b1_m64n64k256(acc, a_desc + s * kStepDesc, b_desc0 + s * kStepDesc, s > 0);
    ptx::wgmma_commit();

    const int next = tile + gridDim.x;
    if (next < tiles) {
      if (tid < kRows) rows[b ^ 1][tid] = row_geometry<KS>(args, g, next * kRows + tid);
      if (nbuf == 1) ptx::wgmma_wait<0>();
      __syncthreads();  // the next tile's rows are in (and, with one buffer, all MMAs are done)
      stage_a(nbuf == 2 ? b ^ 1 : 0, rows[b ^ 1][my_row]);
      ptx::cp_async_commit();
    }
    ptx::wgmma_wait<0>();

#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int local = 16 * warp + 8 * h + gq;
      const Row row = rows[b][local];
      epilogue_row(acc, h, tile * kRows + local, row.r, row.mask, tables, args, g, n0);
    }
  }
#endif
}

size_t smem_bytes(int steps, int ktot, int nbuf) {
  return (1ull + nbuf) * steps * kStepBytes + sizeof(Copy) * ktot;
}
// Two activation buffers while a CTA (dynamic + static shared memory) still fits 3 an SM.
int buffers(int steps, int ktot) { return smem_bytes(steps, ktot, 2) + 12 * 1024 <= 75 * 1024 ? 2 : 1; }

template <int KS, int UW>
void launch(const BinaryConvArgs& a, const Geometry& g, int steps) {
  auto kernel = binary_conv_wgmma_kernel<KS, UW>;
  const int nbuf = buffers(steps, g.Ktot);
  const size_t smem = smem_bytes(steps, g.Ktot, nbuf);
  static size_t smem_set = 0;  // raise this kernel's dynamic shared memory limit once, as needed
  if (smem > 48 * 1024 && smem > smem_set) {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    smem_set = smem;
  }
  int per_sm = 0;
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem));
  const int sms = cuda::sm_count();
  const int slices = (g.O + kCols - 1) / kCols, tiles = (g.M + kRows - 1) / kRows;
  const int per_slice = std::max(1, std::min(tiles, (std::max(per_sm, 1) * sms + slices - 1) / slices));
  kernel<<<dim3((unsigned)per_slice, (unsigned)slices), kThreads, smem, cuda::stream()>>>(a, g, steps, nbuf);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

bool conv2d_wgmma(const BinaryConvArgs& a, const Geometry& g) {
#ifndef MDQ_HAS_SM90A
  (void)a, (void)g;
  return false;
#else
  static const bool hopper = cuda::compute_capability() == 90;
  if (!hopper) return false;
  if (const char* e = std::getenv("MDQ_W1A1_KERNEL"); e && std::strcmp(e, "mma") == 0) return false;
  const int steps = (g.Ktot + 7) / 8;
  if (smem_bytes(steps, g.Ktot, 1) > 200 * 1024) return false;  // K above ~8,000 channels x 3x3
  const bool k3 = g.KH == 3 && g.KW == 3, even = g.Cw % 2 == 0;
  if (k3 && even) launch<3, 2>(a, g, steps);
  else if (k3) launch<3, 1>(a, g, steps);
  else if (even) launch<0, 2>(a, g, steps);
  else launch<0, 1>(a, g, steps);
  return true;
#endif
}

}  // namespace mdq::kernels::binary

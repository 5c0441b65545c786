// W1A1 convolution on Hopper's warpgroup MMA (sm_90a), every warp in one role (gather, multiply,
// store): the kernel for the modes and shapes binary_conv_wgmma_ws.cu's warp-specialised form does
// not take (a residual row read ahead, a fused shortcut, one CTA an SM). The same implicit GEMM, mask terms and
// epilogue as the mma.sync kernel (kernels/binary_conv.cu, kernels/binary_conv_common.cuh), with
// `wgmma.mma_async m64n80k256 .b1 .and.popc` (DESIGN.md E12: 15.5 POPS on an H200 against
// mma.sync's ~10; AND+popc, since XOR is emulated on sm_90). The GEMM has 80 columns: the
// slice's 64 channels and a column of ones (over K; then zeros), whose dot product with a row is
// popc(A&M), E12's activation term, so no row reads pixel popcounts.
//
// Why it is shaped this way: mma.sync left the W1A1 kernel issue-bound (ncu: ~25 instructions
// per m16n8k256 MMA, where the tensor core allows ~6.7). One wgmma does the work of 32 such
// MMAs per warp, and its operands come from shared memory, so the per-k-step fragment loads go:
//   - a warpgroup (128 threads) owns a 64-channel slice, whose weights are staged once into
//     shared memory in wgmma's core-matrix layout (all of K). A CTA is one warpgroup, or two
//     (two slices) on a 3x3 layer of more than 64 channels where such CTAs keep as many warps on
//     an SM: both read the same gathered tile, so the gather and row geometry cost half as much
//     per output (launch_mode);
//   - the CTA walks 64-row tiles (persistent). A tile's activations are gathered (im2col) into
//     shared memory by cp.async, 16 bytes per copy when Cw is a multiple of 4 (3x3), 8 when it
//     is even, zero-filled at taps outside the image; with two buffers the next tile's row
//     geometry and gather run while this tile's MMAs do; a one-warpgroup CTA of long K (C = 512)
//     takes one buffer so that two CTAs still fit an SM;
//   - all k256 steps of a tile are issued back to back as one wgmma group; several CTAs per SM
//     keep the tensor core busy while one of them is in its epilogue;
//   - a residual's f32 row, the epilogue's global inputs, is read while the MMAs run, in an
//     instantiation of its own (kReadAhead): holding it takes 112-125 registers a thread against
//     ~70, which would cost the other modes CTAs per SM for nothing;
//   - ShortcutSignPack (kShortcut) computes that residual instead: the block's 1x1 strided
//     shortcut conv is one more k256 step (its weights after the main ones, its gathered pixel
//     after each tile's main steps) into accumulators of its own, so a downsampling block's end
//     reads no f32 map and the shortcut conv writes none.
// Measured on an H200 (benchmarks/results/2026-12-03-h200-session25.txt): 3.0-3.3x cuDNN bf16 on
// ResNet-18's ImageNet layers, 1.3-1.5x the mma.sync kernel; two warpgroups a CTA took the 128-512
// channel layers from 2.6-2.8x to 2.9-3.1x (session 22). Issue-bound at C = 64 (60-64% of issue
// slots busy; the per-output epilogue was ~58% of a tile's instructions in session 21's profile),
// latency-bound at C >= 256 (34-40% busy), the tensor core 9-16% busy.
// K past Ktot is zero in the weights, so whatever sits in the activation tile there adds nothing.
// Shared-memory operand layout: kernels/binary_conv_wgmma_common.cuh.
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "kernels/binary_conv_common.cuh"
#include "kernels/binary_conv_wgmma_common.cuh"
#include "kernels/cuda_common.h"
#include "kernels/persistent_grid.cuh"
#include "kernels/ptx.cuh"

namespace mdq::kernels::binary {
namespace {

using ptx::smem_u32;
using namespace wgmma;

struct NoRowInputs {};  // what the kernel holds of the epilogue's inputs without kReadAhead

// ShortcutSignPack: output pixel m's word offset in the shortcut's input (its one tap), or -1
// past M (nothing is read).
__device__ __forceinline__ int shortcut_base(const BinaryShortcut& sc, const Geometry& g, int m) {
  if (m >= g.M) return -1;
  const int n = g.ohw.div(m), rem = m - n * g.OH * g.OW, oh = g.ow.div(rem), ow = rem - oh * g.OW;
  return ((n * sc.H + oh * sc.stride) * sc.W + ow * sc.stride) * ((sc.C + 31) / 32);
}

// KS = 3: 3x3 taps unrolled in the row geometry; 0: any size. UW = words per cp.async (4 when
// Cw is a multiple of 4 and x, w 16-byte aligned, 2 when it is even, so that a copy never
// straddles two taps; else 1). kReadAhead: the epilogue's global
// inputs are read while the MMAs run (reads_row_inputs_ahead(mode) only). kShortcut:
// ShortcutSignPack, whose shortcut is step `steps` of both operands (tsteps = steps + 1 a buffer).
// nbuf = 2 activation tile buffers (the next tile's gather overlaps this tile's MMAs) or 1 (long
// K: more CTAs an SM instead). kWG: warpgroups a CTA, each with a 64-channel slice of its own
// (blockIdx.y * kWG + its index) and all reading the same gathered activation tile, so that a
// layer of more than 64 channels gathers each tile once for 64 kWG channels.
template <int KS, int UW, bool kReadAhead, bool kShortcut, int kWG>
__global__ void __launch_bounds__(kWarpgroup* kWG) binary_conv_wgmma_kernel(BinaryConvArgs args, Geometry g, int steps,
                                                                            int nbuf) {
#ifdef MDQ_WGMMA_AVAILABLE
  constexpr int kExtra = kShortcut ? 1 : 0;
  const int tsteps = steps + kExtra;  // k256 steps of one operand buffer
  constexpr int kThreads = kWarpgroup * kWG;
  extern __shared__ __align__(128) uint8_t smem[];
  uint8_t* As = smem;                                                    // [nbuf][tsteps] activation tiles
  uint8_t* Bs_all = As + nbuf * tsteps * kAStep;                         // [kWG][tsteps] weights of the slices
  Copy* copies = reinterpret_cast<Copy*>(Bs_all + kWG * tsteps * kBStep);  // [Ktot / UW]
  __shared__ EpilogueTablesFor<KS == 3 ? 9 : 32> tables_all[kWG];
  __shared__ Row rows[2][kRows];
  __shared__ std::conditional_t<kShortcut, ShortcutTables, char> stables_all[kWG];
  __shared__ std::conditional_t<kShortcut, int[2][kRows], char> srows;  // shortcut_base of each row

  // tid: the thread in the CTA; wg, wtid, warp: its warpgroup, its place and its warp in that.
  // With one warpgroup, spelled so that the compiler sees wg = 0 and wtid = tid; with two, wg is
  // broadcast from lane 0, so that the compiler knows it is warp-uniform and keeps the weights'
  // descriptor in uniform registers (not moved into them for each wgmma).
  const int tid = threadIdx.x, wg = kWG == 1 ? 0 : __shfl_sync(0xffffffffu, tid / kWarpgroup, 0),
            wtid = kWG == 1 ? tid : tid % kWarpgroup,
            warp = wtid >> 5, lane = tid & 31, gq = lane >> 2;
  const int n0 = (blockIdx.y * kWG + wg) * kCols;
  uint8_t* Bs = Bs_all + wg * tsteps * kBStep;  // this warpgroup's slice
  auto& tables = tables_all[wg];
  [[maybe_unused]] auto& stables = stables_all[wg];
  load_epilogue_tables(tables, args, g, n0, wtid, kWarpgroup);  // (every warpgroup at once: it holds barriers)
  if constexpr (kShortcut) load_shortcut_tables(stables, args.shortcut, g, n0, wtid);
  // The slice's weights by cp.async (a plain load-then-store loop would wait out one global
  // latency per word), UW words a copy, one thread a GEMM column walking its K: column p < 64 =
  // channel n0 + slice_channel(p, mode), zero past O and K; column 64 = ones up to K; the rest
  // zero, stored directly. (A warp a column left most lanes idle at small K and made this ~13% of
  // the kernel's instructions at ImageNet's layer1, ncu; a flat walk over (column, copy) spent
  // ~50 instructions a copy on its index arithmetic.)
  // kShortcut: the shortcut's 1x1 weights are step `steps` of the same columns (ShortcutSignPack
  // keeps column p = channel n0 + p), sw <= 8 words, even (binary_conv_fuses_shortcut).
  const int kwords = steps * 8;
  [[maybe_unused]] const int sw = kShortcut ? (args.shortcut.C + 31) / 32 : 0;
  const uint32_t b_base = smem_u32(Bs);
  for (int p = wtid; p < kN; p += kWarpgroup) {
    const int column = operand_offset<kN>(0, p, 0);  // byte offset of column p's first word
    if (p >= kCols) {  // the ones column (up to K, and up to the shortcut's K in its step); zeros
      for (int k = 0; k < kwords; k += UW)
        for (int u = 0; u < UW; ++u)
          *reinterpret_cast<uint32_t*>(Bs + column + operand_offset<kN>(k >> 3, 0, k & 7) + 4 * u) =
              p == kCols && k < g.Ktot ? ~0u : 0u;
      if constexpr (kShortcut)
        for (int k = 0; k < 8; k += 2) {
          const uint32_t v = p == kCols && k < sw ? ~0u : 0u;
          *reinterpret_cast<uint2*>(Bs + column + operand_offset<kN>(steps, 0, k)) = make_uint2(v, v);
        }
      continue;
    }
    const int o = n0 + slice_channel(p, args.mode);
    const bool channel = o < g.O;
    const uint32_t* w_row = args.w + (channel ? (long long)o * g.Ktot : 0);
    for (int k = 0; k < kwords; k += UW)
      ptx::cp_async_gather<4 * UW>(b_base + column + operand_offset<kN>(k >> 3, 0, k & 7), w_row, k,
                                   channel && k < g.Ktot);
    if constexpr (kShortcut) {
      const uint32_t* s_row = args.shortcut.w + (channel ? (long long)o * sw : 0);
      for (int k = 0; k < 8; k += 2)
        ptx::cp_async_gather<8>(b_base + column + operand_offset<kN>(steps, 0, k), s_row, k, channel && k < sw);
    }
  }
  const int ncopies = g.Ktot / UW;
  for (int i = tid; i < ncopies; i += kThreads) {
    const int k = i * UW;
    const int2 ot = k_word_source(g, k);
    copies[i] = Copy{ot.x, static_cast<int>(1u << ot.y), operand_offset<kRows>(k >> 3, 0, k & 7), 0};
  }

  // The gather of one tile into buffer b: 2 kWG threads a row, taking copies in turn.
  const int my_row = tid & (kRows - 1);
  const uint32_t a_row0 = smem_u32(As) + operand_offset<kRows>(0, my_row, 0);
  auto stage_a = [&](int b, Row row, int sbase) {  // (by value: one read of the row, not one a copy)
    const uint32_t a_row = a_row0 + b * tsteps * kAStep;
    // x + the row's base: only read at taps inside the image (the base may point before x)
    const uint32_t* src = args.x + row.base;
    for (int i = tid >> 6; i < ncopies; i += kThreads / kRows) {
      const Copy c = copies[i];
      ptx::cp_async_gather<4 * UW>(a_row + c.dst, src, c.src, (row.mask & static_cast<uint32_t>(c.tap_bit)) != 0u);
    }
    if constexpr (kShortcut) {  // the row's shortcut pixel into step `steps`, 2 words a copy
      const int sw = (args.shortcut.C + 31) / 32;
      const uint32_t* s_src = args.shortcut.x + (sbase >= 0 ? sbase : 0);
      for (int k = 2 * (tid >> 6); k < sw; k += 2 * kThreads / kRows)
        ptx::cp_async_gather<8>(a_row + operand_offset<kRows>(steps, 0, k), s_src, k, sbase >= 0);
    }
  };
  // The geometry of tile t's row `tid` into row table b (tid < kRows).
  auto fill_row = [&](int b, int t) {
    const int m = t * kRows + tid;
    rows[b][tid] = row_geometry<KS, false>(args, g, m);
    if constexpr (kShortcut) srows[b][tid] = shortcut_base(args.shortcut, g, m);
  };
  auto my_shortcut_base = [&](int b) {
    if constexpr (kShortcut) return srows[b][my_row];
    else return 0;
  };

  // Per tile: the MMAs of tile t are issued, then the rows of tile t + 1 are worked out and its
  // gather is queued (while the tensor core works, with two buffers; after it, with one), then
  // the epilogue of t. Row tables alternate; the barrier at the top of an iteration also frees
  // what the last one read.
  const int tiles = (g.M + kRows - 1) / kRows;
  int tile = blockIdx.x, b = 0;
  if (tile < tiles && tid < kRows) fill_row(0, tile);
  __syncthreads();  // tables, copy list and the first tile's rows are in
  if (tile < tiles) stage_a(0, rows[0][my_row], my_shortcut_base(0));
  ptx::cp_async_commit();
  const uint64_t a_desc0 = ptx::wgmma_desc(smem_u32(As), 16 * kRows, 128);
  const uint64_t b_desc0 = ptx::wgmma_desc(smem_u32(Bs), 16 * kN, 128);
  int32_t acc[10][4] = {};
  [[maybe_unused]] std::conditional_t<kShortcut, int32_t[10][4], char> acc_s{};
  for (; tile < tiles; tile += gridDim.x, b ^= 1) {  // uniform across the CTA
    const int abuf = nbuf == 2 ? b : 0;
    ptx::cp_async_wait<0>();          // this thread's copies of `tile` (and the weights) have landed,
    ptx::fence_proxy_async_shared();  // are visible to wgmma's (async proxy) reads,
    __syncthreads();                  // and so are everyone else's; the last epilogue is done

    ptx::wgmma_fence();  // acc was last written by the epilogue
    // (descriptor address fields count 16-byte units)
    const uint64_t a_desc = ptx::wgmma_desc_advance(a_desc0, abuf * tsteps * (kAStep >> 4));
    for (int s = 0; s < steps; ++s)
      ptx::wgmma_b1_m64n80k256(acc, ptx::wgmma_desc_advance(a_desc, s * (kAStep >> 4)),
                               ptx::wgmma_desc_advance(b_desc0, s * (kBStep >> 4)), s > 0);
    if constexpr (kShortcut)
      ptx::wgmma_b1_m64n80k256(acc_s, ptx::wgmma_desc_advance(a_desc, steps * (kAStep >> 4)),
                               ptx::wgmma_desc_advance(b_desc0, steps * (kBStep >> 4)), false);
    ptx::wgmma_commit();
    // The epilogue's residual row read while the MMAs run (kReadAhead: ResidualSignPack).
    [[maybe_unused]] std::conditional_t<kReadAhead, RowInputs[2], NoRowInputs> ahead;
    if constexpr (kReadAhead) {
#pragma unroll
      for (int h = 0; h < 2; ++h) load_row_inputs(ahead[h], tile * kRows + 16 * warp + 8 * h + gq, args, g, n0);
    }

    const int next = tile + gridDim.x;
    if (next < tiles) {
      if (tid < kRows) fill_row(b ^ 1, next);
      if (nbuf == 1) ptx::wgmma_wait<0>();
      __syncthreads();  // the next tile's rows are in (and, with one buffer, all MMAs are done)
      stage_a(nbuf == 2 ? b ^ 1 : 0, rows[b ^ 1][my_row], my_shortcut_base(b ^ 1));
      ptx::cp_async_commit();
    }
    ptx::wgmma_wait<0>();

    // popc(A&M) of row 8 h + g is column 64, held by lane 4 g (acc[8][2 h]).
    auto& channels = reinterpret_cast<int32_t(&)[8][4]>(acc);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int local = 16 * warp + 8 * h + gq;
      const Row row = rows[b][local];
      const int popc_a = __shfl_sync(0xffffffffu, acc[8][2 * h], lane & ~3);
      const int r = 2 * popc_a - __popc(row.mask) * g.C;
      const RowInputs* inputs = nullptr;  // null: the epilogue reads its inputs in place
      if constexpr (kReadAhead) inputs = &ahead[h];
      [[maybe_unused]] std::conditional_t<kShortcut, RowInputs, NoRowInputs> from_shortcut;
      if constexpr (kShortcut) {
        shortcut_row_inputs(from_shortcut, acc_s, h, stables, args.shortcut);
        inputs = &from_shortcut;
      }
      epilogue_row(channels, h, tile * kRows + local, r, row.mask, tables, args, g, n0, inputs);
    }
  }
#endif
}

// Two activation buffers while a CTA (dynamic + up to ~16 KB static shared memory) still fits 3 an SM.
int buffers(int steps, int ktot) { return smem_bytes(steps, ktot, 2) + 16 * 1024 <= 75 * 1024 ? 2 : 1; }

template <int KS, int UW, bool kReadAhead, bool kShortcut, int kWG>
void launch_shape(const BinaryConvArgs& a, const Geometry& g, int steps, int nbuf, size_t smem) {
  const auto kernel = binary_conv_wgmma_kernel<KS, UW, kReadAhead, kShortcut, kWG>;
  const long long slices = (g.O + kWG * kCols - 1) / (kWG * kCols);
  const dim3 grid = persistent_grid(kernel, kWarpgroup * kWG, smem, (g.M + kRows - 1) / kRows, slices);
  kernel<<<grid, kWarpgroup * kWG, smem, cuda::stream()>>>(a, g, steps, nbuf);
  CUDA_CHECK_LAUNCH();
}

// A layer of more than one 64-channel slice (3x3) runs two warpgroups a CTA, one slice each on one
// gathered tile, where such CTAs with two activation buffers keep at least as many warps on an SM
// as one-warpgroup CTAs: the gather and the row geometry then cost half as much per output. Where
// they do not (long K: ResNet-18's 512 channels), one warpgroup a CTA, whose single buffer leaves
// the other CTAs of the SM to overlap its gather.
template <int KS, int UW, bool kReadAhead, bool kShortcut>
void launch_mode(const BinaryConvArgs& a, const Geometry& g, int steps) {
  const int tsteps = steps + (kShortcut ? 1 : 0);
  const int nbuf = buffers(tsteps, g.Ktot);
  const size_t smem = smem_bytes(tsteps, g.Ktot, nbuf);
  if constexpr (KS == 3) {
    const int asked = warpgroups_asked();
    if (g.O > kCols && asked != 1) {
      const size_t smem2 = smem_bytes(tsteps, g.Ktot, 2, 2);
      const int ctas2 = smem2 <= 200 * 1024
                            ? resident_ctas(binary_conv_wgmma_kernel<KS, UW, kReadAhead, kShortcut, 2>, 2 * kWarpgroup, smem2)
                            : 0;
      const int ctas1 = resident_ctas(binary_conv_wgmma_kernel<KS, UW, kReadAhead, kShortcut, 1>, kWarpgroup, smem);
      if (ctas2 > 0 && (asked == 2 || 2 * ctas2 >= ctas1)) {
        launch_shape<KS, UW, kReadAhead, kShortcut, 2>(a, g, steps, 2, smem2);
        return;
      }
    }
  }
  launch_shape<KS, UW, kReadAhead, kShortcut, 1>(a, g, steps, nbuf, smem);
}

template <int KS, int UW>
void launch(const BinaryConvArgs& a, const Geometry& g, int steps) {
  if (a.mode == BinaryEpilogue::ShortcutSignPack) launch_mode<KS, UW, false, true>(a, g, steps);
  else if (reads_row_inputs_ahead(a.mode)) launch_mode<KS, UW, true, false>(a, g, steps);
  else launch_mode<KS, UW, false, false>(a, g, steps);
}

}  // namespace

bool wgmma_applies(const ConvShape& g) {
#ifndef MDQ_HAS_SM90A
  (void)g;
  return false;
#else
  static const bool hopper = cuda::compute_capability() == 90;
  if (!hopper) return false;
  if (const char* e = std::getenv("MDQ_W1A1_KERNEL"); e && std::strcmp(e, "mma") == 0) return false;
  return smem_bytes((g.Ktot + 7) / 8, g.Ktot, 1) <= 200 * 1024;  // K up to ~8,000 channels x 3x3
#endif
}

bool fuses_shortcut(const BinaryConvArgs& a, const ConvShape& g) {
  const BinaryShortcut& s = a.shortcut;
  if (!s.x || !s.w || !s.tap_popc || s.stride < 1 || s.H < 1 || s.W < 1) return false;
  const int sw = (s.C + 31) / 32;
  const bool one_step = s.C > 0 && sw % 2 == 0 && sw <= 8;
  return one_step && (s.H - 1) / s.stride + 1 == g.OH && (s.W - 1) / s.stride + 1 == g.OW &&
         static_cast<long long>(a.N) * s.H * s.W * sw < (1LL << 31) && wgmma_applies(g);
}

bool conv2d_wgmma(const BinaryConvArgs& a, const Geometry& g) {
#ifndef MDQ_HAS_SM90A
  (void)a, (void)g;
  return false;
#else
  if (!wgmma_applies(g)) return false;
  const char* e = std::getenv("MDQ_W1A1_KERNEL");
  const bool ws = e && std::strcmp(e, "ws") == 0, wgmma = e && std::strcmp(e, "wgmma") == 0;
  if (!wgmma && conv2d_wgmma_ws(a, g, ws)) return true;
  const int steps = (g.Ktot + 7) / 8;
  with_layer_shape(a, g, [&](auto ks, auto uw) { launch<decltype(ks)::value, decltype(uw)::value>(a, g, steps); });
  return true;
#endif
}

}  // namespace mdq::kernels::binary

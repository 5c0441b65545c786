// The stem convolution on tensor cores (issue #16):
//
//   y[n][oh][ow][o] = act(fma(d, scale[o], shift[o])),
//   d = sum over c, kh, kw of bf16(x[n][c][oh S - pad + kh][ow S - pad + kw]) * bf16(w[o][c][kh][kw])
//
// (out-of-image taps 0), or with split operands (StemMmaOperands::SplitBf16) each product as
// hi(x) hi(w) + hi(x) lo(w) + lo(x) hi(w), hi(v) = bf16(v), lo(v) = bf16(v - hi(v)): three MMAs
// for one, each product within 3.02 * 2^-16 of f32's. The products are exact in f32, the sum is
// f32 in the tensor cores' order: not bit-identical to the direct kernel's f32 fma chain
// (kernels/stem_conv_mma.h says more, and holds the CPU reference). An implicit GEMM, M = N*OH*OW output pixels, N_gemm = O filters
// (16, 32, 64), K = the window's taps, on mma.sync m16n8k16 bf16 with f32 accumulation. The
// direct kernel (kernels/stem_conv.cu) spends f32 fmas on CUDA cores: ImageNet's stem at batch
// 256 is 256 x 112^2 x 64 x 147 = 30.2 G fmas (60 GFLOP), 1.70 ms on an H200, about half of its
// ~67 TFLOPS f32 peak; as the GEMM here (K padded to 176) it is 72 GFLOP of bf16 MMAs, ~0.12 ms
// at mma.sync's ~600 TFLOPS (x3 with split operands). Measured there (bench_packed_resnet18 256,
// wgmma k-steps, the window at compile time, TMA staging), the signs form: 0.195 ms with bf16
// operands, 0.293 ms split (level weights), against the direct kernel's 1.7 ms. ncu (split,
// before TMA staging: 0.363 ms): latency-bound, 25% occupancy (2 CTAs an SM, by shared memory),
// 1411 instructions a warp a tile: 38% of them the f32 patch's 4-byte cp.asyncs and their address
// and bounds arithmetic (what TMA replaced), 14% the rounding pass, 22% the 11 k-steps, 22% the
// signs epilogue; the MMAs are not the limit.
//
// K as pairs of taps. The A fragment of m16n8k16 gives each lane, per register, two consecutive
// k of one row; K is ordered so that those two are horizontally adjacent taps of one window row:
// pair p = (c, kh, j), j < PR = ceil(KW / 2), holds taps kw = 2j and 2j + 1 (the second one's
// weight 0 when 2j + 1 = KW), p = (c KH + kh) PR + j; K = 2 C KH PR rounded up to 16 with
// zero-weight pairs (ImageNet's 7x7x3: 84 pairs, K = 176, 11 k-steps, against 147 taps). Each A
// register is then ONE 32-bit shared load of a bf16 pair, with no repacking:
//   - stride 2: a pixel's window starts at an even input column and its pairs at even offsets,
//     so the patch is kept as plain bf16 rows and a pair is the aligned word (2 col, 2 col + 1);
//   - stride 1: the window starts at any column, so the patch is kept as overlapping pairs, word
//     col = (x[col], x[col + 1]) (twice the bytes).
// Either way A[pixel][pair] is the word at pixel_base + pair_offset (a table in shared memory).
// A zero-weight tap (kw = KW for odd KW, padding pairs) still reads an image value: a non-finite
// image value there would give 0 x inf = NaN where the direct kernel gives a finite result, so
// the images must be finite (real images are).
//
// CTA: 256 threads (8 warps), persistent (grid = min(tiles, SMs x resident CTAs), tiles tile,
// tile + grid, ...); a tile is 16 x 16 output pixels of one image, as in the direct kernel. Per
// CTA, once: the weights as bf16 pairs [O][K/2 + 4 words] (the 4-word pad makes the B ldmatrix
// rows conflict-free), scale, shift, the pair-offset table. Per tile: the f32 input patch
// ((16 - 1) S + KH rows x the columns the pairs reach, C channels, zeros outside the image)
// arrives in one of two f32 staging buffers, one tile ahead: by 4-byte cp.async (a warp a patch
// row, lanes along it), or, with the window at compile time, by one TMA copy (Hopper) or in
// 16-byte cp.async chunks (load_stage_chunks). Then all threads round it once to bf16 into the
// A patch (pairs as above, a warp a row, a lane a word); then the MMAs; then the epilogue. Two
// barriers a tile. Both passes over the patch loop over channels and rows with no division and
// unrolled column steps: with a division per row and the generic column loop they took 64% of
// the kernel's instructions (ncu, ImageNet's stem at batch 256).
//
// Split operands: the weights' and the A patch's lo parts sit right after their hi parts (same
// layouts; Config::PARTS = 2), the rounding pass writes both, and a k-step (mma_ksteps) loads the
// A fragments twice (hi, then lo into the same registers) and each B fragment pair hi and lo: MMAs
// with hi(x) x {hi(w), lo(w)}, then lo(x) x hi(w). Where every lo(w) is 0 (weights that are bf16
// values: quantized levels, what mdq's W1A1 and W1A16 stems hold), which each CTA finds as it
// stores them, the hi(x) lo(w) MMAs are left out (KForm::SplitExactW: both x parts held, each B
// fragment loaded once): two MMAs a product, the same sums. The shared memory grows by a weight
// block and a patch (ImageNet's stem: 66 -> 99 KB a CTA, still 2 CTAs an SM).
//
// Warp tiling: a warp owns 2 m16 tiles x all O filters (O/8 n8 tiles): 2 x O/2 f32 accumulators
// (64 for O = 64). An m16 tile is 16 pixels: stride 2, one output column of 16 rows (lane group
// g = lane / 4 holds rows g and g + 8; the warp's two tiles are columns w and w + 8); stride 1,
// 2 columns x 8 rows (g: row g / 2, column g % 2; rows + 4 for the upper half; the warp's tiles
// are rows 0-7 and 8-15 of columns 2w, 2w + 1). Patch row pitches (22 words at stride 2, 24 at
// stride 1) put a load's 8 pixels x 4 pairs of one window row in 32 distinct banks. Per k-step a
// warp makes 8 A loads (4 per m16 tile) and O/16 ldmatrix.x4 for B, and 2 x O/8 MMAs.
// On Hopper builds (sm_90a) stems of 64 filters issue them as wgmma m64n64k16 with A from
// registers instead (wgmma_ksteps): the four warps of a warpgroup give their m16 tile m's A
// fragments, the same registers, to one m64 tile and get the same accumulators back, so a k-step
// is 2 wgmmas a warp and form where mma.sync takes 16, and the tensor cores read B from shared
// memory (in wgmma's core-matrix layout, weight_word) with no ldmatrix.
//
// Epilogue: lane (g, t) holds filters 8 nt + 2 t + {0, 1} of its pixels: f32 / bf16 stores of 2
// filters (8 / 4 bytes), stem_affine_act on each f32 sum. Signs form: a lane's 8 bits
// of word w (filters 32 w + 8 i + 2 t + e, i < 4) OR'd over the quad by two xor shuffles, per
// pixel of the quad (4: 2 m16 tiles x 2 halves), lane t storing pixel t's O/32 words.
#include <cuda.h>           // CUtensorMap
#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled

#include <cstdint>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "common/error.h"
#include "kernels/backend.h"
#include "kernels/bf16.cuh"
#include "kernels/cuda_common.h"
#include "kernels/driver_entry.h"
#include "kernels/persistent_grid.cuh"
#include "kernels/ptx.cuh"
#include "kernels/stem_conv_mma.h"
#include "kernels/stem_launch.cuh"

namespace mdq::kernels {
namespace stem_mma {
namespace {

constexpr int kTile = 16, kThreads = 256;
constexpr int kMaxPairsPerRow = (kStemMaxWindow + 1) / 2;

template <int C, int O, int S, bool Split>
struct Config {
  static_assert(S == 1 || S == 2, "stride 1 or 2");
  static_assert(O == 16 || O == 32 || O == 64, "16, 32 or 64 filters");
  static constexpr int NT = O / 8;                                 // n8 tiles
  static constexpr int ROWS = (kTile - 1) * S + kStemMaxWindow;    // patch rows (the largest window)
  static constexpr int PW = S == 2 ? 22 : 24;                      // A patch words a row (conflict-free pitch)
  static constexpr int APLANE = ROWS * PW, AWORDS = C * APLANE;    // A patch words
  // f32 staging columns a row, rounded up to whole 16-byte units
  static constexpr int PF = ((S == 2 ? 2 * (kTile - 1 + kMaxPairsPerRow) : kTile - 1 + 2 * kMaxPairsPerRow) + 3) / 4 * 4;
  static constexpr int FPLANE = ROWS * PF, FWORDS = C * FPLANE;    // f32 staging floats a buffer
  static constexpr int FBUF = (FWORDS + 31) / 32 * 32;            // a buffer's words, rounded up to 128 bytes
  static constexpr int HALF = S == 2 ? 8 * 2 * PW : 4 * PW;        // lane group's second pixel (+8 / +4 rows)
  static constexpr int MT1 = S == 2 ? 8 : 8 * PW;                  // the warp's second m16 tile
  static_assert(S == 1 || (kTile - 1 + kMaxPairsPerRow) <= PW, "stride-2 words fit the pitch");
  static_assert(S == 2 || (kTile - 2 + 2 * kMaxPairsPerRow) <= PW, "stride-1 words fit the pitch");
  static constexpr int PARTS = Split ? 2 : 1;                      // bf16 hi (+ lo) of weights and patch
  // Shared 4-byte words for K = kp: 2 staging buffers, their 2 mbarriers (TMA), weights, scale,
  // shift, pair offsets, A patch.
  static constexpr int words(int kp) { return 2 * FBUF + 4 + PARTS * O * (kp / 2 + 4) + 2 * O + kp / 2 + PARTS * AWORDS; }
};

// K (taps, as pairs, padded to 16) for a window: 2 C KH ceil(KW / 2) rounded up to 16.
constexpr int padded_k(int C, int KH, int KW) { return (2 * C * KH * ((KW + 1) / 2) + 15) / 16 * 16; }

// Hopper builds (sm_90a) run the k-steps of 64-filter stems on wgmma m64n64k16 with A from
// registers (wgmma_ksteps): a k-step is one instruction per m16 tile and product form where
// mma.sync takes eight, and B comes straight from shared memory with no ldmatrix. Other filter
// counts and other builds take mma.sync (mma_ksteps).
template <int O>
constexpr bool kWgmma =
#ifdef MDQ_WGMMA_AVAILABLE
    O == 64;
#else
    false;
#endif

// The word of weight pair p of filter o in one part (hi or lo) of the weights. mma.sync: rows of
// wp = K / 2 + 4 words (ldmatrix reads them). wgmma: per k-step s = p / 8, 8 O words of core
// matrices, 8 filters x 16 bytes (8 k) each, K-major with no swizzle: k half (p % 8) / 4 at 4 O
// words (LBO = 16 O bytes), filter group o / 8 at 32 words (SBO = 128 bytes), filter o % 8 at 4.
template <int O>
__device__ __forceinline__ int weight_word(int o, int p, int wp) {
  if constexpr (kWgmma<O>) return (p >> 3) * 8 * O + ((p >> 2) & 1) * 4 * O + (o >> 3) * 32 + (o & 7) * 4 + (p & 3);
  else return o * wp + p;
}

template <class Out>
constexpr bool kSigns = std::is_same_v<Out, uint32_t>;

struct Geometry {
  int OH, OW, tiles_w, tiles_per_image, tiles, kp;
  int tma;  // the Win = 7 kernel stages by TMA (kTma; else in 16-byte cp.async chunks)
};

// The Win = 7 kernel can stage a tile with one TMA copy (Hopper builds).
template <int O, int Win>
constexpr bool kTma = kWgmma<O> && Win != 0;

// Where a tile is: image n, tile row th and column tw (the only divisions of a tile).
struct TileAt {
  int n, th, tw;
};
__device__ __forceinline__ TileAt tile_at(const Geometry& g, int tile) {
  const int n = tile / g.tiles_per_image, t = tile - n * g.tiles_per_image, th = t / g.tiles_w;
  return {n, th, t - th * g.tiles_w};
}

// The f32 patch of a tile into a staging buffer: rows < `rows` = (16 - 1) S + KH, columns <
// `cols`, zeros outside the image. The rest of the pitch is never read. A warp a patch row (c, r),
// its lanes along the columns (coalesced), the column steps unrolled. Offsets are 32-bit from the
// image's start (C H W < 2^31: run() checks) and the columns' tests are made once a tile: with
// 64-bit addresses and a division per row this pass took 38% of the kernel's instructions.
template <int C, int O, int S>
__device__ __forceinline__ void load_stage(const StemConvArgs& a, TileAt at, int rows, int cols, float* buf) {
  using Cfg = Config<C, O, S, false>;  // the staging layout does not depend on Split
  constexpr int kColSteps = (Cfg::PF + 31) / 32;
  const int ih0 = at.th * kTile * S - a.pad, iw0 = at.tw * kTile * S - a.pad, lane = threadIdx.x & 31;
  const float* image = a.x + int64_t(at.n) * C * a.H * a.W;
  int iw[kColSteps];
  bool col_in[kColSteps];  // inside the image (and the patch)
#pragma unroll
  for (int i = 0; i < kColSteps; ++i) {
    iw[i] = iw0 + lane + 32 * i;
    col_in[i] = unsigned(iw[i]) < unsigned(a.W);
  }
#pragma unroll
  for (int c = 0; c < C; ++c)
    for (int r = threadIdx.x >> 5; r < rows; r += kThreads / 32) {
      const int ih = ih0 + r, row = (c * a.H + ih) * a.W;
      const bool row_in = unsigned(ih) < unsigned(a.H);
      float* dst = buf + c * Cfg::FPLANE + r * Cfg::PF + lane;
#pragma unroll
      for (int i = 0; i < kColSteps; ++i) {
        const bool in = row_in && col_in[i];
        if (lane + 32 * i < cols) ptx::cp_async4_zfill(dst + 32 * i, image + (in ? row + iw[i] : 0), in);
      }
    }
}

// The f32 patch of a tile in 16-byte cp.asyncs, for the Win = 7 kernel: the staged columns start
// one left of the patch, at image column tw 16 S - pad - 1, a multiple of 4 where pad % 4 = 3 and
// W % 4 = 0 (launch_for_window checks both and the images' 16-byte alignment), so each 4-column
// chunk is wholly inside or wholly outside the image and one zero-filling copy moves it: PF / 4
// chunks a row, C ROWS PF / 4 a tile spread over the CTA's threads (ImageNet's stem: 1110 copies,
// where load_stage issued 4218 of 4 bytes with a bounds test each; ncu counted 533 instructions a
// warp a tile for that staging, 38% of the kernel's). round_patch<..., 1> reads it.
template <int C, int O, int S>
__device__ __forceinline__ void load_stage_chunks(const StemConvArgs& a, TileAt at, float* buf) {
  using Cfg = Config<C, O, S, false>;  // the staging layout does not depend on Split
  constexpr int kChunks = Cfg::PF / 4, kPlane = Cfg::ROWS * kChunks, kTotal = C * kPlane;
  const int ih0 = at.th * kTile * S - a.pad, iw0 = at.tw * kTile * S - a.pad - 1;
  const float* image = a.x + int64_t(at.n) * C * a.H * a.W;
#pragma unroll 1  // unrolled, the copies' tile-invariant offsets were hoisted out of the tile loop and spilled
  for (int i = 0; i < (kTotal + kThreads - 1) / kThreads; ++i) {
    const int e = int(threadIdx.x) + i * kThreads;
    if (e < kTotal) {
      const int c = e / kPlane, rc = e - c * kPlane, r = rc / kChunks, k = rc - r * kChunks;
      const int ih = ih0 + r, iw = iw0 + 4 * k;
      const bool in = unsigned(ih) < unsigned(a.H) && unsigned(iw) < unsigned(a.W);
      ptx::cp_async16_zfill(buf + c * Cfg::FPLANE + r * Cfg::PF + 4 * k, image + (in ? (c * a.H + ih) * a.W + iw : 0),
                            in);
    }
  }
}

// x = hi(x) + lo(x) + r: hi(x) = bf16(x), lo(x) = bf16(x - hi(x)) (x - hi(x) is exact in f32),
// |r| <= 2^-8 |x - hi(x)| <= 2^-16 |x| (bf16's unit roundoff 2^-8, twice). The lo parts of the
// pair (v0, v1) whose hi parts are the word hi = pack2(v0, v1): a bf16 as f32 is its bits in the
// upper half.
__device__ __forceinline__ uint32_t lo_parts(float v0, float v1, uint32_t hi) {
  return pack2(v0 - __uint_as_float(hi << 16), v1 - __uint_as_float(hi & 0xffff0000u));
}

// The staged patch as the A patch's bf16 pairs (and, Split, their lo parts AWORDS on): word wc of
// a row is (col, col + 1), col = 2 wc at stride 2 (a float2), wc at stride 1, where staged
// column Lead + col holds patch column col (Lead = 1: load_stage_chunks). A warp a row, a lane a
// word (a row has ww <= PW <= 32 of them).
template <int C, int O, int S, bool Split, int Lead>
__device__ __forceinline__ void round_patch(const float* stage, int rows, int ww, uint32_t* apatch) {
  using Cfg = Config<C, O, S, Split>;
  static_assert(Cfg::PW <= 32, "a lane a word");
  const int lane = threadIdx.x & 31;
  if (lane >= ww) return;
#pragma unroll
  for (int c = 0; c < C; ++c)
    for (int r = threadIdx.x >> 5; r < rows; r += kThreads / 32) {
      const float* src = stage + c * Cfg::FPLANE + r * Cfg::PF + Lead;
      float2 v;
      if constexpr (S == 2 && Lead % 2 == 0) v = *reinterpret_cast<const float2*>(src + 2 * lane);
      else if constexpr (S == 2) v = make_float2(src[2 * lane], src[2 * lane + 1]);
      else v = make_float2(src[lane], src[lane + 1]);
      uint32_t* dst = apatch + c * Cfg::APLANE + r * Cfg::PW + lane;
      const uint32_t hi = pack2(v.x, v.y);
      dst[0] = hi;
      if constexpr (Split) dst[Cfg::AWORDS] = lo_parts(v.x, v.y, hi);
    }
}

// How a k-step forms its products (the equation's forms, kernels/stem_conv_mma.h). Bf16: one MMA,
// bf16(x) bf16(w). Split: three, hi(x) hi(w) + hi(x) lo(w) + lo(x) hi(w). SplitExactW: Split where
// every lo(w) is 0 (weights that are bf16 values, as the quantized levels -1, 0, 1 are), whose
// hi(x) lo(w) MMAs would add exact zeros and are left out: two, hi(x) w + lo(x) w.
enum class KForm { Bf16, Split, SplitExactW };

// Where a lane's operands are: its first pixel's word in the A patch (hi part; lo AWORDS on), the
// pair -> patch word table, its ldmatrix row of hi(w) (lo(w) b_lo bytes on, n16 groups b_q apart).
struct Operands {
  const uint32_t* ap;
  const int* poff;
  uint32_t b_addr, b_q, b_lo;
  int tq;  // the lane's place in its quad
};

// This lane's A fragments of x part p (0: hi, 1: lo) for both m16 tiles m, o0 and o1 the patch
// words of the k-step's pairs t and t + 4: (row g, k 2t..2t+1), (row g + 8, same k), (row g,
// k 2t+8..2t+9), (row g + 8, same k). The same registers feed mma.sync and wgmma.
template <class Cfg>
__device__ __forceinline__ void load_a(uint32_t (&af)[2][4], const Operands& op, int p, int o0, int o1) {
  const uint32_t* apart = op.ap + p * Cfg::AWORDS;
#pragma unroll
  for (int m = 0; m < 2; ++m) {
    af[m][0] = apart[m * Cfg::MT1 + o0];
    af[m][1] = apart[m * Cfg::MT1 + Cfg::HALF + o0];
    af[m][2] = apart[m * Cfg::MT1 + o1];
    af[m][3] = apart[m * Cfg::MT1 + Cfg::HALF + o1];
  }
}

// acc += the products of every k-step, in form F.
template <class Cfg, KForm F>
__device__ __forceinline__ void mma_ksteps(float (&acc)[2][Cfg::NT][4], const Operands& op, int ksteps) {
  constexpr int NT = Cfg::NT, XPARTS = F == KForm::Bf16 ? 1 : 2;  // hi(x) (and lo(x))
#pragma unroll(F == KForm::Bf16 ? 2 : 1)  // split forms: a second k-step unrolled would spill at O = 64
  for (int ks = 0; ks < ksteps; ++ks) {
    const int o0 = op.poff[8 * ks + op.tq], o1 = op.poff[8 * ks + 4 + op.tq];  // pairs t and t + 4 of the k-step
    const uint32_t kb = uint32_t(ks * 32);
    // acc[m][2q], acc[m][2q + 1] += A (both m16 tiles) x the n16 group q's B fragments b (one
    // ldmatrix.x4: b[0], b[1] n8 tile 2q's, b[2], b[3] 2q + 1's).
    auto mma_b = [&](const uint32_t (&af)[2][4], int q, const uint32_t (&b)[4]) {
      const uint32_t b0[2] = {b[0], b[1]}, b1[2] = {b[2], b[3]};
#pragma unroll
      for (int m = 0; m < 2; ++m) {
        ptx::mma_bf16(acc[m][2 * q], af[m], b0);
        ptx::mma_bf16(acc[m][2 * q + 1], af[m], b1);
      }
    };
    if constexpr (F == KForm::SplitExactW) {
      // Both x parts held, each B fragment loaded once for both (each accumulator still takes
      // hi(x) w before lo(x) w, as in Split).
      uint32_t ahi[2][4], alo[2][4];
      load_a<Cfg>(ahi, op, 0, o0, o1);
      load_a<Cfg>(alo, op, 1, o0, o1);
#pragma unroll
      for (int q = 0; q < NT / 2; ++q) {
        uint32_t b[4];
        ptx::ldmatrix_x4(b, op.b_addr + q * op.b_q + kb);
        mma_b(ahi, q, b);
        mma_b(alo, q, b);
      }
    } else {
      // Bf16: hi(x) x hi(w). Split: first the products with hi(x), hi(w) and lo(w), then lo(x)'s
      // with hi(w) (the lo(x) lo(w) terms, 2^-16 relative, left out). lo(x) reuses the A
      // registers and hi(w) is loaded again for it rather than held: holding both parts of A and
      // B spilled at O = 64 (128 registers).
#pragma unroll
      for (int p = 0; p < XPARTS; ++p) {
        uint32_t af[2][4];
        load_a<Cfg>(af, op, p, o0, o1);
#pragma unroll
        for (int q = 0; q < NT / 2; ++q)
#pragma unroll
          for (int wpart = 0; wpart < XPARTS - p; ++wpart) {  // hi(w) (and lo(w) with hi(x))
            uint32_t b[4];
            ptx::ldmatrix_x4(b, op.b_addr + wpart * op.b_lo + q * op.b_q + kb);
            mma_b(af, q, b);
          }
      }
    }
  }
}

// The A patch words of k-step ks's pairs t and t + 4 (t = the lane's tq), relative to op.ap: from
// the pair table (Win = 0), or with the window at compile time those of window rows R = 2 ks and
// 2 ks + 1, constants (pair p = 4 R + t, as PR = 4; op.ap then already at the lane's pair t).
// Rows past the window's (zero-weight padding) read row 0.
template <class Cfg, int C, int Win>
__device__ __forceinline__ void pair_words(const Operands& op, int ks, int& o0, int& o1) {
  if constexpr (Win != 0) {
    static_assert((Win + 1) / 2 == 4, "4 pairs a window row: pairs t and t + 4 are rows 2 ks and 2 ks + 1");
    auto row = [](int R) { return R < C * Win ? (R / Win) * Cfg::APLANE + (R % Win) * Cfg::PW : 0; };
    o0 = row(2 * ks);
    o1 = row(2 * ks + 1);
  } else {
    o0 = op.poff[8 * ks + op.tq];
    o1 = op.poff[8 * ks + 4 + op.tq];
  }
}

// acc += the products of every k-step, in form F, on wgmma (kWgmma): the warpgroup's m64n64k16
// for m16 tile m takes its four warps' tile-m A fragments, the same registers mma_ksteps loads,
// and leaves the same accumulators (ptx::wgmma_bf16_m64n64k16_rs). B of k-step s, part q (hi(w),
// lo(w)) is the descriptor b_desc + s * kstep_units + q * lo_units. Each x part's wgmmas are one
// group, so that the next k-step's hi(x) fragments load while this one's lo(x) wgmmas run (a
// second set of A registers would serialize the wgmmas at 128 registers). Each accumulator takes
// its k-step's forms in mma_ksteps' order. With the window at compile time (Win) the k-steps are
// unrolled, their A offsets constants.
template <class Cfg, KForm F, int C, int Win>
__device__ __forceinline__ void wgmma_ksteps(float (&acc)[2][Cfg::NT][4], const Operands& op, uint64_t b_desc,
                                             uint32_t kstep_units, uint32_t lo_units, int ksteps) {
  constexpr int XPARTS = F == KForm::Bf16 ? 1 : 2;  // hi(x) (and lo(x))
  constexpr int kFixedSteps = Win != 0 ? padded_k(C, Win, Win) / 16 : 0;  // the k-steps of a compile-time window
  if constexpr (Win != 0) ksteps = kFixedSteps;
  uint32_t a[XPARTS][2][4];                         // [x part][m16 tile]
  auto load = [&](int p, int ks) {
    int o0, o1;
    pair_words<Cfg, C, Win>(op, ks, o0, o1);
    load_a<Cfg>(a[p], op, p, o0, o1);
  };
#pragma unroll
  for (int p = 0; p < XPARTS; ++p) load(p, 0);
#pragma unroll
  for (int m = 0; m < 2; ++m) ptx::fence_operands(acc[m]);  // zeroed before the first wgmma
  auto kstep = [&](int ks) {
    const uint64_t b = b_desc + uint64_t(ks) * kstep_units;
    ptx::wgmma_fence();  // a was just loaded (and acc zeroed, the first time)
#pragma unroll
    for (int m = 0; m < 2; ++m) {
      ptx::wgmma_bf16_m64n64k16_rs(acc[m], a[0][m], b);                                               // hi(x) hi(w)
      if constexpr (F == KForm::Split) ptx::wgmma_bf16_m64n64k16_rs(acc[m], a[0][m], b + lo_units);  // hi(x) lo(w)
    }
    ptx::wgmma_commit();
    if constexpr (XPARTS == 2) {
#pragma unroll
      for (int m = 0; m < 2; ++m) ptx::wgmma_bf16_m64n64k16_rs(acc[m], a[1][m], b);  // lo(x) hi(w)
      ptx::wgmma_commit();
    }
    if (ks + 1 < ksteps) {
      ptx::wgmma_wait<XPARTS - 1>();  // the hi(x) group is done
      load(0, ks + 1);
      if constexpr (XPARTS == 2) {
        ptx::wgmma_wait<0>();  // and the lo(x) group
        load(1, ks + 1);
      }
    }
  };
  if constexpr (Win != 0) {
#pragma unroll
    for (int ks = 0; ks < kFixedSteps; ++ks) kstep(ks);
  } else {
    for (int ks = 0; ks < ksteps; ++ks) kstep(ks);
  }
  ptx::wgmma_wait<0>();
#pragma unroll
  for (int m = 0; m < 2; ++m) ptx::fence_operands(acc[m]);  // read after the last wgmma is done
}

// Win: the window, Win x Win, at compile time; 0: any window up to kStemMaxWindow, at run time.
// ImageNet's stem (7x7, 3 channels, 64 filters, stride 2, padding 3) compiles with Win = 7: the
// loop bounds and, on the wgmma path, every k-step's A patch offsets are then constants (no pair
// table reads, no address arithmetic), the 11 k-steps are unrolled, and the patch is staged by
// one TMA copy a tile or in 16-byte chunks (load_stage_chunks).
//
// images: where g.tma (kTma), the images as a TMA tensor (W, H, C, N) whose box (PF, ROWS, C, 1)
// is a staging buffer (make_image_map); otherwise unused. It is the first parameter, where its
// 128-byte alignment holds.
template <class Out, int C, int O, int S, bool Split, int Win>
__global__ void __launch_bounds__(kThreads, 2)
    stem_mma_kernel(const __grid_constant__ CUtensorMap images, StemConvArgs a, Geometry g, Out* y) {
  using Cfg = Config<C, O, S, Split>;
  constexpr int NT = Cfg::NT, PW = Cfg::PW;
  static_assert(Win == 0 || (kTile - 1) * S + Win == Cfg::ROWS, "a compile-time window fills the staging rows");
  extern __shared__ __align__(128) uint32_t smem[];
  const int np = g.kp / 2, wp = np + 4;  // pairs (K / 2); weight row pitch in words
  // One part of the weights: O rows of wp words (mma.sync) or ksteps blocks of O x 8 words (wgmma).
  const int wblock = kWgmma<O> ? O * np : O * wp;
  float* stage = reinterpret_cast<float*>(smem);           // 2 x [C][ROWS][PF], FBUF words apart (128-byte aligned)
  const uint32_t bars = ptx::smem_u32(smem + 2 * Cfg::FBUF);  // 2 mbarriers (TMA): staging buffer b's at bars + 8 b
  uint32_t* ws = smem + 2 * Cfg::FBUF + 4;                  // [PARTS][wblock]: bf16 pairs (k even low, k odd high)
  float* ss = reinterpret_cast<float*>(ws + Cfg::PARTS * O * wp);  // scale [O] (after the larger layout's weights)
  float* hs = ss + O;                                   // shift [O]
  int* poff = reinterpret_cast<int*>(hs + O);           // [np]: pair -> A patch word offset
  uint32_t* apatch = reinterpret_cast<uint32_t*>(poff + np);  // [PARTS][C][ROWS][PW]

  const int tid = threadIdx.x;
  const bool tma = kTma<O, Win> && g.tma;
  if (tma && tid == 0) {
    ptx::mbarrier_init(bars, 1);
    ptx::mbarrier_init(bars + 8, 1);
  }
  const int kh_n = Win ? Win : a.KH, kw_n = Win ? Win : a.KW;  // the window
  const int pr = (kw_n + 1) / 2, real_pairs = C * kh_n * pr;
  // Once per CTA: the weights as bf16 pairs, the pair offsets, the affine.
  bool lo_w_seen = false;  // a non-zero lo(w) word (Split)
  for (int e = tid; e < O * np; e += kThreads) {
    const int o = e / np, p = e - o * np;
    float lo = 0.f, hi = 0.f;
    if (p < real_pairs) {
      const int c = p / (a.KH * pr), rem = p - c * (a.KH * pr), kh = rem / pr, kw = 2 * (rem - kh * pr);
      const float* wr = a.w + ((int64_t(o) * C + c) * a.KH + kh) * a.KW;
      lo = wr[kw];
      if (kw + 1 < a.KW) hi = wr[kw + 1];
    }
    const uint32_t hi_w = pack2(lo, hi);
    const int at = weight_word<O>(o, p, wp);
    ws[at] = hi_w;
    if constexpr (Split) {
      const uint32_t lo_w = lo_parts(lo, hi, hi_w);
      ws[wblock + at] = lo_w;
      lo_w_seen |= lo_w != 0;
    }
  }
  if constexpr (kWgmma<O>) ptx::fence_proxy_async_shared();  // wgmma reads the weights through the async proxy
  // With every lo(w) operand 0 the hi(x) lo(w) MMAs add nothing: KForm::SplitExactW skips them.
  const bool w_exact = Split && !__syncthreads_or(lo_w_seen);
  for (int p = tid; p < np; p += kThreads) {
    int off = 0;  // padding pairs (weight 0) read the patch's first word
    if (p < real_pairs) {
      const int c = p / (a.KH * pr), rem = p - c * (a.KH * pr), kh = rem / pr, j = rem - kh * pr;
      off = c * Cfg::APLANE + kh * PW + j * (2 / S);
    }
    poff[p] = off;
  }
  static_assert(O <= kThreads, "a thread a filter");
  if (tid < O) {
    const float sc = a.scale ? a.scale[tid] : 1.f, sh = a.shift ? a.shift[tid] : 0.f;
    if constexpr (kSigns<Out>) {  // ss: stem_sign's thresholds; hs: their flip bits, a word per 32 filters
      bool flip;
      ss[tid] = stem_sign_threshold(sc, sh, a.relu, flip);
      const uint32_t flips = __ballot_sync(0xffffffffu, flip);
      if ((tid & 31) == 0) reinterpret_cast<uint32_t*>(hs)[tid / 32] = flips;
    } else {
      ss[tid] = sc;
      hs[tid] = sh;
    }
  }

  // The patch's extent: A words a row (ww) and f32 columns (cols) the pairs reach.
  const int ww = S == 2 ? kTile - 1 + pr : kTile - 2 + 2 * pr;
  const int cols = S == 2 ? 2 * ww : ww + 1;
  const int rows = (kTile - 1) * S + kh_n;

  const int warp = tid >> 5, lane = tid & 31, gq = lane >> 2, tq = lane & 3;
  // This lane's first pixel (m16 tile 0, row group g) as an A patch word.
  const int base = S == 2 ? gq * 2 * PW + warp : (gq >> 1) * PW + 2 * warp + (gq & 1);
  // ... and, where the wgmma k-steps take the window at compile time, at its pair t = tq, so that
  // their offsets are constants (pair_words; mma_ksteps reads the pair table, whose offsets hold t)
  const int a_first = base + (Win != 0 && kWgmma<O> ? tq * (2 / S) : 0);
  // ldmatrix.x4 rows for B: lanes 8 i .. 8 i + 7 address matrix i = (n8 tile 2q + i / 2, k half
  // i % 2), row n = lane % 8 of it; r[0], r[1] are n8 tile 2q's b0, b1, r[2], r[3] tile 2q + 1's.
  const uint32_t b_addr = ptx::smem_u32(ws) +
                          uint32_t(((lane & 7) + ((lane >> 4) << 3)) * wp * 4 + ((lane >> 3) & 1) * 16);
  const uint32_t b_q = uint32_t(16 * wp * 4);  // bytes between n16 groups
  const uint32_t b_lo = uint32_t(O * wp * 4);  // bytes from hi(w) to lo(w) (Split)
  const int ksteps = g.kp / 16;

  int tile = blockIdx.x, buf = 0;
  TileAt at = tile_at(g, tile);
  // The f32 patch of tile t into staging buffer b (its staged columns then start Lead before the patch's).
  constexpr int Lead = Win != 0 ? 1 : 0;
  // With TMA, one copy whose box starts, like the chunks, one column left of the patch (a 16-byte
  // aligned start: an unaligned one raised an illegal instruction), its bytes completing mbarrier b.
  auto stage_tile = [&](TileAt t, int b) {
    if (tma) {
      if (tid == 0) {
        ptx::mbarrier_arrive_expect_tx(bars + 8 * b, Cfg::FWORDS * 4);
        ptx::tma_load_4d(ptx::smem_u32(stage + b * Cfg::FBUF), &images, t.tw * kTile * S - a.pad - 1,
                         t.th * kTile * S - a.pad, 0, t.n, bars + 8 * b);
      }
    } else if constexpr (Win != 0) {
      load_stage_chunks<C, O, S>(a, t, stage + b * Cfg::FBUF);
    } else {
      load_stage<C, O, S>(a, t, rows, cols, stage + b * Cfg::FBUF);
    }
  };
  uint32_t uses = 0;  // tiles this CTA staged before `tile`: staging buffer buf's (uses >> 1)-th use
  if (tma) __syncthreads();  // the mbarriers are initialised
  if (tile < g.tiles) stage_tile(at, 0);
  ptx::cp_async_commit();
  for (; tile < g.tiles; tile += gridDim.x, ++uses) {
    const int next = tile + gridDim.x;
    const TileAt next_at = next < g.tiles ? tile_at(g, next) : at;
    if (next < g.tiles) stage_tile(next_at, buf ^ 1);
    if (tma) {
      ptx::mbarrier_wait(bars + 8 * buf, (uses >> 1) & 1);  // the copy of `tile` has landed
    } else {
      ptx::cp_async_commit();
      ptx::cp_async_wait<1>();  // this thread's copies of `tile` have landed
    }
    __syncthreads();  // ... everyone's; everyone is done with the A patch of the last tile (and,
                      // the first time, the tables and the affine are stored)
    round_patch<C, O, S, Split, Lead>(stage + buf * Cfg::FBUF, rows, ww, apatch);
    __syncthreads();

    float acc[2][NT][4];
#pragma unroll
    for (int m = 0; m < 2; ++m)
#pragma unroll
      for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[m][j][e] = 0.f;
    const Operands op{apatch + a_first, poff, b_addr, b_q, b_lo, tq};
    // The k-steps in form F, on wgmma or mma.sync.
    auto ksteps_in = [&](auto form) {
      constexpr KForm F = decltype(form)::value;
      if constexpr (kWgmma<O>) {
        // (descriptor addresses count 16-byte units: a k-step's block is 32 O bytes)
        const uint64_t b_desc = ptx::wgmma_desc(ptx::smem_u32(ws), 16 * O, 128);
        wgmma_ksteps<Cfg, F, C, Win>(acc, op, b_desc, 2 * O, uint32_t(wblock) / 4, ksteps);
      } else {
        mma_ksteps<Cfg, F>(acc, op, ksteps);
      }
    };
    if constexpr (!Split) ksteps_in(std::integral_constant<KForm, KForm::Bf16>{});
    else if (w_exact) ksteps_in(std::integral_constant<KForm, KForm::SplitExactW>{});
    else ksteps_in(std::integral_constant<KForm, KForm::Split>{});

    const int n = at.n, th = at.th, tw = at.tw;
    // Pixel (m16 tile m, half h) of this lane, in the tile.
    auto pix_row = [&](int m, int h) { return S == 2 ? gq + 8 * h : (gq >> 1) + 4 * h + 8 * m; };
    auto pix_col = [&](int m) { return S == 2 ? warp + 8 * m : 2 * warp + (gq & 1); };
    // The affine (signs: the thresholds) of a lane's filters is loaded once per n8 tile and used
    // for its 4 pixels.
    if constexpr (kSigns<Out>) {
      constexpr int WORDS = O / 32;
      uint32_t mine[WORDS] = {};
#pragma unroll
      for (int w = 0; w < WORDS; ++w) {
        // (m16 tile, half): this lane's 8 bits of word w, first at bits 8 i + e (constant positions:
        // a set and an AND-OR each), then moved to 8 i + 2 t + e by one shift
        uint32_t word[2][2] = {};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int j = 4 * w + i, o = 8 * j + 2 * tq;
          const float2 t = *reinterpret_cast<const float2*>(ss + o);
#pragma unroll
          for (int m = 0; m < 2; ++m)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              word[m][h] |= ptx::ge_mask(acc[m][j][2 * h], t.x) & (1u << (8 * i));
              word[m][h] |= ptx::ge_mask(acc[m][j][2 * h + 1], t.y) & (2u << (8 * i));
            }
        }
#pragma unroll
        for (int m = 0; m < 2; ++m)
#pragma unroll
          for (int h = 0; h < 2; ++h) word[m][h] <<= 2 * tq;
#pragma unroll
        for (int m = 0; m < 2; ++m)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            uint32_t v = word[m][h];
            v |= __shfl_xor_sync(0xffffffffu, v, 1);  // the quad's four disjoint parts
            v |= __shfl_xor_sync(0xffffffffu, v, 2);
            if (tq == 2 * m + h) mine[w] = v;
          }
        mine[w] ^= reinterpret_cast<const uint32_t*>(hs)[w];  // stem_sign_threshold's flips
      }
      const int oh = th * kTile + pix_row(tq >> 1, tq & 1), ow = tw * kTile + pix_col(tq >> 1);
      if (oh < g.OH && ow < g.OW) {
        uint32_t* p = y + ((int64_t(n) * g.OH + oh) * g.OW + ow) * WORDS;
        if constexpr (WORDS == 2) *reinterpret_cast<uint2*>(p) = make_uint2(mine[0], mine[1]);
        else *p = mine[0];
      }
    } else {
      Out* yp[2][2];  // this lane's pixels' first filter, or null outside the map
#pragma unroll
      for (int m = 0; m < 2; ++m)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int oh = th * kTile + pix_row(m, h), ow = tw * kTile + pix_col(m);
          yp[m][h] = oh < g.OH && ow < g.OW ? y + ((int64_t(n) * g.OH + oh) * g.OW + ow) * O + 2 * tq : nullptr;
        }
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const int o = 8 * j + 2 * tq;
        const float2 sc = *reinterpret_cast<const float2*>(ss + o), sh = *reinterpret_cast<const float2*>(hs + o);
#pragma unroll
        for (int m = 0; m < 2; ++m)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            if (!yp[m][h]) continue;
            const float v0 = stem_affine_act(acc[m][j][2 * h], sc.x, sh.x, a.relu);
            const float v1 = stem_affine_act(acc[m][j][2 * h + 1], sc.y, sh.y, a.relu);
            if constexpr (sizeof(Out) == 4) *reinterpret_cast<float2*>(yp[m][h] + 8 * j) = make_float2(v0, v1);
            else *reinterpret_cast<uint32_t*>(yp[m][h] + 8 * j) = pack2(v0, v1);
          }
      }
    }
    buf ^= 1;
    at = next_at;
  }
}

template <class Out, int C, int O, int S, bool Split, int Win>
void launch(const StemConvArgs& a, const Geometry& g, Out* y, const CUtensorMap& images) {
  using Cfg = Config<C, O, S, Split>;
  auto kernel = stem_mma_kernel<Out, C, O, S, Split, Win>;
  constexpr int kMaxBytes = Cfg::words(padded_k(C, kStemMaxWindow, kStemMaxWindow)) * 4;
  // The largest window's shared memory opted in and the grid sized for it, as the direct kernel does.
  const dim3 grid = persistent_grid(kernel, kThreads, kMaxBytes, g.tiles, 1);
  const int bytes = Cfg::words(g.kp) * 4;
  kernel<<<grid, kThreads, bytes, cuda::stream()>>>(images, a, g, y);
  CUDA_CHECK_LAUNCH();
}

// The images as a TMA tensor map for the Win = 7 kernel: an f32 tensor (W, H, C, N), innermost
// first, whose box (PF, ROWS, C, 1) is one staging buffer, zeros outside the images. False where
// the driver has no cuTensorMapEncodeTiled or refuses the map.
template <class Cfg>
bool make_image_map(const StemConvArgs& a, CUtensorMap* map) {
  static const auto encode = cuda::driver_entry_point<PFN_cuTensorMapEncodeTiled_v12000>("cuTensorMapEncodeTiled");
  if (!encode) return false;
  const cuuint64_t f = sizeof(float);
  const cuuint64_t dims[4] = {cuuint64_t(a.W), cuuint64_t(a.H), cuuint64_t(a.C), cuuint64_t(a.N)};
  const cuuint64_t strides[3] = {a.W * f, cuuint64_t(a.H) * a.W * f, cuuint64_t(a.C) * a.H * a.W * f};  // bytes, dims 1-3
  const cuuint32_t box[4] = {Cfg::PF, Cfg::ROWS, cuuint32_t(a.C), 1}, unit[4] = {1, 1, 1, 1};
  return encode(map, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 4, const_cast<float*>(a.x), dims, strides, box, unit,
                CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// ImageNet's stem (C 3, O 64, stride 2, 7x7, padding 3, rows of a multiple of 4 floats, the
// images 16-byte aligned: what the aligned staging needs) on the Win = 7 kernel; every other stem
// on the run-time-window kernel.
template <class Out, int C, int O, int S, bool Split>
void launch_for_window(const StemConvArgs& a, Geometry g, Out* y) {
  CUtensorMap images{};
  if constexpr (C == 3 && O == 64 && S == 2) {
    const bool chunks = a.W % 4 == 0 && a.pad % 4 == 3 && reinterpret_cast<uintptr_t>(a.x) % 16 == 0;
    if (a.KH == 7 && a.KW == 7 && chunks) {
      // TMA (0.296 ms for ImageNet's batch of 256 on an H200, where the chunks took 0.326 and
      // 4-byte copies 0.355), unless MDQ_STEM_STAGING=chunks: the staging of builds without
      // wgmma, which the GPU tests then run on Hopper too (as MDQ_W1A1_KERNEL=mma does for W1A1)
      const char* staging = std::getenv("MDQ_STEM_STAGING");
      g.tma = !(staging && std::string(staging) == "chunks") && make_image_map<Config<C, O, S, Split>>(a, &images);
      return launch<Out, C, O, S, Split, 7>(a, g, y, images);
    }
  }
  launch<Out, C, O, S, Split, 0>(a, g, y, images);
}

template <class Out>
bool run(const StemConvArgs& a, Out* y, StemMmaOperands operands) {
  stem_check_fits<kSigns<Out>>(a, kSigns<Out> ? "stem_conv_mma_signs: the tensor-core kernel"
                                             : "stem_conv_mma_nhwc: the tensor-core kernel");
  MDQ_CHECK(int64_t(a.C) * a.H * a.W < (int64_t(1) << 31),
            "the tensor-core stem takes images of fewer than 2^31 values (32-bit offsets), not " << a.C << "x" << a.H
                                                                                                << "x" << a.W);
  if (!stem_conv_mma_supported()) return false;
  Geometry g{};
  g.OH = ops::window_output_size(a.H, a.KH, a.stride, a.pad);
  g.OW = ops::window_output_size(a.W, a.KW, a.stride, a.pad);
  if (a.N <= 0 || g.OH <= 0 || g.OW <= 0) return true;
  g.tiles_w = (g.OW + kTile - 1) / kTile;
  g.tiles_per_image = g.tiles_w * ((g.OH + kTile - 1) / kTile);
  g.tiles = a.N * g.tiles_per_image;
  g.kp = padded_k(a.C, a.KH, a.KW);
  stem_dispatch<kSigns<Out>>(a, [&](auto c, auto o, auto s) {
    if (operands == StemMmaOperands::SplitBf16)
      launch_for_window<Out, decltype(c)::value, decltype(o)::value, decltype(s)::value, true>(a, g, y);
    else
      launch_for_window<Out, decltype(c)::value, decltype(o)::value, decltype(s)::value, false>(a, g, y);
  });
  return true;
}

}  // namespace
}  // namespace stem_mma

bool stem_conv_mma_supported() { return cuda::compute_capability() >= 80; }
bool stem_conv_mma_nhwc_bf16(const StemConvArgs& a, uint16_t* y, StemMmaOperands operands) {
  return stem_mma::run(a, y, operands);
}
bool stem_conv_mma_nhwc_f32(const StemConvArgs& a, float* y, StemMmaOperands operands) {
  return stem_mma::run(a, y, operands);
}
bool stem_conv_mma_signs(const StemConvArgs& a, uint32_t* bits, StemMmaOperands operands) {
  return stem_mma::run(a, bits, operands);
}

void register_stem_conv_mma(CudaBackend& b) {
  b.stem_conv_mma_supported = stem_conv_mma_supported;
  b.stem_conv_mma_nhwc_bf16 = stem_conv_mma_nhwc_bf16;
  b.stem_conv_mma_nhwc_f32 = stem_conv_mma_nhwc_f32;
  b.stem_conv_mma_signs = stem_conv_mma_signs;
}

}  // namespace mdq::kernels

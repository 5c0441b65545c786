// What the two W1A1 convolution kernels share (kernels/binary_conv.cu on mma.sync for sm_80+,
// kernels/binary_conv_wgmma.cu on wgmma for sm_90a): the row geometry, E12's mask terms and the
// epilogue of one accumulator row. Both kernels give a CTA one slice of 64 output channels and
// hold, per row and per n8 tile j, the accumulator fragment of mma.m16n8 / wgmma.m64nN:
//   acc[j][2 h + e] = popc(A & W) of row (8 h + g) of the lane's m16 block, column 8 j + 2 t + e
// (lane = 4 g + t), so one epilogue serves both. With SignPack (and SkipSignPack), column p of the GEMM is channel
// n0 + slice_channel(p) (the weights are staged in that order): a lane's 16 columns are then 16
// consecutive channels, whose signs fill half of one packed 32-bit word at bit positions known at
// compile time (one shuffle per row instead of four, no shifts by lane-dependent amounts), and
// the two columns of one n8 tile are channels 8 apart, whose sign bits paired_signs_row moves
// into place together. The
// modes that write 4 (Int16: 2) bytes an output keep column p = channel n0 + p, so that the four
// lanes of a row write 32 (16) contiguous bytes (permuted, each would touch its own 32-byte sector).
//
// E12 with the mask, for output pixel p and channel o, V(p) the taps inside the image:
//   a·w = 4 popc(A&W&M) - 2 popc(A&M) - 2 popc(W&M) + popc(M)
//   popc(A&W&M) = popc(A&W)       the gathered A is 0 outside the image and in padded channels;
//   popc(A&M)   = Σ_{t∈V(p)} pixel_popc[input pixel of tap t];
//   popc(W&M)   = wtot[o] - Σ_{t∉V(p)} tap_popc[o][t]   (the second sum is empty inside the image);
//   popc(M)     = |V(p)| · C.
// Per row r(p) = 2 popc(A&M) - popc(M), so d = 4 acc - r(p) - 2 popc(W&M).
#pragma once
#include <cstdint>

#include "kernels/binary_conv.h"
#include "kernels/ptx.cuh"

namespace mdq::kernels::binary {

constexpr int kCols = 64;  // output channels of a CTA's slice: 8 n8 tiles

// The modes whose only output is packed signs, one word written per (pixel, 32 channels).
__host__ __device__ constexpr bool packs_signs(BinaryEpilogue mode) {
  return mode == BinaryEpilogue::SignPack || mode == BinaryEpilogue::SkipSignPack;
}

// The channel (within the slice) of GEMM column p = 8 j + 2 t + e: 16 t + 8 e + j when the
// output is packed signs, else p.
__host__ __device__ constexpr int slice_channel(int p, BinaryEpilogue mode) {
  return packs_signs(mode) ? 16 * ((p >> 1) & 3) + 8 * (p & 1) + (p >> 3) : p;
}

// n / d for 0 <= n < 2^31 by a multiply-high and a shift (Granlund-Montgomery, as CUTLASS's
// FastDivmod): integer division is ~20 instructions, this is 3, and every row needs two.
struct FastDiv {
  int d = 1;
  unsigned magic = 0, shift = 0;
  FastDiv() = default;
  explicit FastDiv(int divisor) : d(divisor) {
    while ((1u << shift) < static_cast<unsigned>(d)) ++shift;
    magic = static_cast<unsigned>(((1ull << 32) * ((1ull << shift) - d)) / d + 1);
  }
  __device__ __forceinline__ int div(int n) const {
    return static_cast<int>((__umulhi(static_cast<unsigned>(n), magic) + static_cast<unsigned>(n)) >> shift);
  }
};

struct Geometry : ConvShape {
  int M;            // output pixels N*OH*OW (the caller keeps it below 2^31)
  FastDiv ohw, ow;  // OH*OW and OW
};

inline Geometry make_geometry(const BinaryConvArgs& a) {
  Geometry g{};
  static_cast<ConvShape&>(g) = conv_shape(a);
  g.M = static_cast<int>(static_cast<long long>(a.N) * g.OH * g.OW);
  g.ohw = FastDiv(g.OH * g.OW);
  g.ow = FastDiv(g.OW);
  return g;
}

// Output pixel m's word offset of its first tap in x, its tap mask (bit t: tap t inside the
// image) and r = 2 popc(A&M) - popc(M). Rows past M get mask 0 (nothing is read for them).
// kPopc = false leaves r = 0 and reads no pixel_popc (the wgmma kernel gets popc(A&M) from the
// tensor core instead).
struct Row {
  int base = 0, r = 0;
  uint32_t mask = 0;
};
template <int KS, bool kPopc = true>  // KS = 3: 3x3 taps unrolled; 0: any size
__device__ __forceinline__ Row row_geometry(const BinaryConvArgs& args, const Geometry& g, int m) {
  Row row;
  if (m >= g.M) return row;
  const int KH = KS ? KS : g.KH, KW = KS ? KS : g.KW;
  const int n = g.ohw.div(m), rem = m - n * g.OH * g.OW, oh = g.ow.div(rem), ow = rem - oh * g.OW;
  const int ih0 = oh * g.stride - g.pad, iw0 = ow * g.stride - g.pad;
  row.base = ((n * g.H + ih0) * g.W + iw0) * g.Cw;
  int sum_a = 0, nvalid = 0;
#pragma unroll
  for (int kh = 0; kh < KH; ++kh) {
    const int ih = ih0 + kh;
    const bool row_in = ih >= 0 && ih < g.H;
#pragma unroll
    for (int kw = 0; kw < KW; ++kw) {
      const int iw = iw0 + kw;
      const bool in = row_in && iw >= 0 && iw < g.W;
      row.mask |= (in ? 1u : 0u) << (kh * KW + kw);
      if (kPopc) sum_a += in ? __ldg(args.pixel_popc + (n * g.H + ih) * g.W + iw) : 0;
      nvalid += in;
    }
  }
  if (kPopc) row.r = 2 * sum_a - nvalid * g.C;
  return row;
}

// Word k of the K dimension (tap k / Cw, channel word k % Cw) as (word offset from the row's
// base, tap); kNoTap past K, whose mask bit is never set.
constexpr int kNoTap = 31;
__device__ __forceinline__ int2 k_word_source(const Geometry& g, int k) {
  if (k >= g.Ktot) return make_int2(0, kNoTap);
  const int tap = k / g.Cw, cw = k - tap * g.Cw, kh = tap / g.KW, kw = tap - kh * g.KW;
  return make_int2((kh * g.W + kw) * g.Cw + cw, tap);
}

// Per-slice constants of the epilogue, in shared memory (registers are full), by GEMM column.
// kTaps: the most taps a filter has (KH*KW <= 31). The wgmma kernel's 3x3 instantiations take 9:
// 6 KB less shared memory a CTA, one more CTA an SM on ResNet-18's 256-channel layers.
template <int kTaps>
struct EpilogueTablesFor {
  int2 thr[kCols / 2];       // SignPack: dmin + 2 wtot per column pair (8 j + 2 t, + 1), dmin
                             // clamped to [-K - 1, K + 1] (K + 1 past O: never reached); other
                             // modes: 2 wtot (0 past O)
  uint32_t flip[2];          // SignPack: the flip bits of the slice's 64 channels (by channel)
  int2 thr_plus[kCols / 2];  // SkipSignPack: thr and flip are those of a skip of -1, these of +1
  uint32_t flip_plus[2];
  uint4 tpair[2][4][2];      // thr's pair 4 j + t as t0 + 2^16 t1 (mod 2^32), word j of [.][t]; [1]: thr_plus's
  int2 tap[kTaps][kCols / 2];  // 2 popc(W) of tap t per column pair; 0 past O
  int2 border[16][kCols / 2];  // 3x3 only: Σ tap[t] over the taps of border class c (below)
  float2 aff[kCols];         // (scale, shift), other modes
};
using EpilogueTables = EpilogueTablesFor<32>;

// A 3x3 pixel on the border of the image misses whole rows and columns of taps: its border
// class (bits: row 0, row 2, column 0, column 2 of the taps missing) names that set, and the
// border table holds its 2 popc(W) sum, so the epilogue adds one precomputed vector instead of
// one per missing tap. -1 for a miss mask that is not such a union (images narrower than 2
// pixels), which takes the per-tap loop.
constexpr uint32_t kRow0 = 0007u, kRow2 = 0700u, kCol0 = 0111u, kCol2 = 0444u;
__host__ __device__ constexpr uint32_t border_mask(int c) {
  return (c & 1 ? kRow0 : 0u) | (c & 2 ? kRow2 : 0u) | (c & 4 ? kCol0 : 0u) | (c & 8 ? kCol2 : 0u);
}
__device__ __forceinline__ int border_class(uint32_t miss) {
  const int c = ((miss & kRow0) == kRow0) | ((miss & kRow2) == kRow2) << 1 | ((miss & kCol0) == kCol0) << 2 |
                ((miss & kCol2) == kCol2) << 3;
  return border_mask(c) == miss ? c : -1;
}

// Fills the tables of the slice starting at channel n0 with threads tid = 0 .. nthreads - 1 (the
// CTA, or one warpgroup of it: every thread of the CTA must call, as it holds barriers); the
// caller __syncthreads() after.
template <class Tables>  // EpilogueTablesFor<kTaps>, kTaps >= g.T
__device__ inline void load_epilogue_tables(Tables& s, const BinaryConvArgs& args, const Geometry& g, int n0, int tid,
                                            int nthreads) {
  const int T1 = g.T + 1;
  const bool pack = packs_signs(args.mode), skip = args.mode == BinaryEpilogue::SkipSignPack;
  uint32_t* tpair = reinterpret_cast<uint32_t*>(s.tpair);  // [set][t][j]
  if (tid < 2) s.flip[tid] = 0u, s.flip_plus[tid] = 0u;
  for (int i = tid; i < static_cast<int>(sizeof(s.tpair) / sizeof(uint32_t)); i += nthreads) tpair[i] = 0u;
  __syncthreads();
  if (tid < kCols) {
    const int c = slice_channel(tid, args.mode), o = n0 + c;
    const bool in = o < g.O;
    const int wtot2 = in ? 2 * __ldg(args.tap_popc + o * T1 + g.T) : 0;
    // |d| <= K: a dmin outside [-K, K] sets every bit or none, as its clamp does
    const int K = g.T * g.C;
    // Threshold set i (SkipSignPack: 0 for a skip of -1, 1 for +1) into thr, tpair and flip: the
    // bit is (d + 2 wtot >= dmin + 2 wtot) xor flip; past O never set.
    auto threshold = [&](int i, uint32_t* flip) {
      if (!in) return K + 1;
      if (__ldg(args.thresholds + (2 * i + 1) * g.O + o)) atomicOr(&flip[c / 32], 1u << (c % 32));
      return min(max(__ldg(args.thresholds + 2 * i * g.O + o), -K - 1), K + 1) + wtot2;
    };
    // column tid = 8 j + 2 t + e: half e of word j of tpair[i][t]
    auto pair_into = [&](int i, int t) {
      atomicAdd(&tpair[(i * 4 + ((tid >> 1) & 3)) * 8 + (tid >> 3)], static_cast<uint32_t>(t) << (16 * (tid & 1)));
    };
    int t = wtot2, t_plus = K + 1;
    if (pack) t = threshold(0, s.flip), pair_into(0, t);
    if (skip) t_plus = threshold(1, s.flip_plus), pair_into(1, t_plus);
    reinterpret_cast<int*>(s.thr)[tid] = t;
    reinterpret_cast<int*>(s.thr_plus)[tid] = t_plus;
    s.aff[tid] = make_float2(in && args.scale ? args.scale[o] : 1.f, in && args.shift ? args.shift[o] : 0.f);
  }
  for (int idx = tid; idx < g.T * kCols; idx += nthreads) {
    const int t = idx / kCols, p = idx - t * kCols, o = n0 + slice_channel(p, args.mode);
    reinterpret_cast<int*>(s.tap[t])[p] = o < g.O ? 2 * __ldg(args.tap_popc + o * T1 + t) : 0;
  }
  if (g.KH == 3 && g.KW == 3) {
    __syncthreads();  // tap is in
    // One thread a column: its 9 tap counts read once, each class's sum unrolled over the taps
    // border_mask(c) names (known at compile time): a few adds a class, not a 9-step loop.
    for (int p = tid; p < kCols; p += nthreads) {
      int tap9[9];
#pragma unroll
      for (int t = 0; t < 9; ++t) tap9[t] = reinterpret_cast<const int*>(s.tap[t])[p];
#pragma unroll
      for (int c = 0; c < 16; ++c) {
        int sum = 0;
#pragma unroll
        for (int t = 0; t < 9; ++t)
          if (border_mask(c) >> t & 1u) sum += tap9[t];
        reinterpret_cast<int*>(s.border[c])[p] = sum;
      }
    }
  }
}

// scale d + shift in f32 as one fused multiply-add (a = (scale, shift)), the Affine modes' value.
// Written as the fma that nvcc contracts the plain expression to by default, so that the form
// does not hang on -fmad or on how the compiler sees one expression site or another.
__device__ __forceinline__ float affine(float2 a, int d) { return __fmaf_rn(a.x, static_cast<float>(d), a.y); }

// ResidualSignPack's residual at output pixel m, channels o and o + 1 (0 outside the map).
__device__ __forceinline__ float2 residual_pair(const BinaryConvArgs& args, const Geometry& g, int m, int o) {
  if (m >= g.M || o >= g.O) return make_float2(0.f, 0.f);
  const long long idx = (long long)m * g.O + o;
  if ((g.O & 1) == 0) return __ldg(reinterpret_cast<const float2*>(args.residual + idx));
  return make_float2(__ldg(args.residual + idx), o + 1 < g.O ? __ldg(args.residual + idx + 1) : 0.f);
}

// ResidualSignPack's residual of one row (output pixel m, this lane's channels o = n0 + 8 j +
// 2 tq + {0, 1}), which the wgmma kernel reads while its MMAs run: read inside the epilogue,
// between its stores, the 8 residual reads of a row waited out one global latency each (ncu, H200:
// a residual block's second conv took 2.4x the time of an identity block's). SkipSignPack's skip
// word (n0 / 32 + tq / 2, skip_word) is read in place.
struct RowInputs {
  float2 residual[8];
};
__device__ __forceinline__ uint32_t skip_word(const BinaryConvArgs& args, const Geometry& g, int m, int n0) {
  const int Ow = (g.O + 31) / 32, word = n0 / 32 + ((threadIdx.x & 3) >> 1);
  return m < g.M && word < Ow ? __ldg(args.skip_bits + (long long)m * Ow + word) : 0u;
}
// The modes whose inputs the wgmma kernel reads ahead: ResidualSignPack's 8 reads a row.
// SkipSignPack's one word a row is read in place: read ahead, the registers it took cost CTAs per
// SM that one latency a row does not (ResNet-18's identity blocks' second convs, ncu on an H200:
// 76 / 76 / 50 us at layers 1-2 against 72 / 72 / 49 in place).
__host__ __device__ constexpr bool reads_row_inputs_ahead(BinaryEpilogue mode) {
  return mode == BinaryEpilogue::ResidualSignPack;
}
__device__ __forceinline__ void load_row_inputs(RowInputs& in, int m, const BinaryConvArgs& args, const Geometry& g,
                                                int n0) {
  const int tq = threadIdx.x & 3;
  if (args.mode == BinaryEpilogue::ResidualSignPack)
#pragma unroll
    for (int j = 0; j < 8; ++j) in.residual[j] = residual_pair(args, g, m, n0 + 8 * j + 2 * tq);
}

// ShortcutSignPack: the shortcut's per-column constants (column p = channel n0 + p), in shared
// memory beside EpilogueTables, and the row's residual from the shortcut's accumulators
// acc_s (wgmma m64n80: 64 channels and the ones column 64, whose dot product is popc(A_s)).
// A 1x1 unpadded tap is inside the image for every pixel, so E12 is
//   d_s = 4 popc(A_s & W_s) - 2 popc(A_s) - 2 popc(W_s) + C_s,
// the value the Affine epilogue forms, and the residual is affine(aff[p], d_s), the f32 value a
// separate shortcut conv writes: the signs equal ResidualSignPack's bit for bit.
struct ShortcutTables {
  int wtot2[kCols];   // 2 popc(W_s) (0 past O)
  float2 aff[kCols];  // (scale, shift) (1, 0 past O or where null)
};
__device__ inline void load_shortcut_tables(ShortcutTables& s, const BinaryShortcut& sc, const Geometry& g, int n0,
                                            int p) {  // p: the thread's index in the CTA or warpgroup
  const int o = n0 + p;
  if (p >= kCols) return;
  const bool in = o < g.O;
  s.wtot2[p] = in ? 2 * __ldg(sc.tap_popc + 2 * o + 1) : 0;
  s.aff[p] = make_float2(in && sc.scale ? __ldg(sc.scale + o) : 1.f, in && sc.shift ? __ldg(sc.shift + o) : 0.f);
}
__device__ __forceinline__ void shortcut_row_inputs(RowInputs& in, const int32_t (&acc_s)[10][4], int h,
                                                    const ShortcutTables& s, const BinaryShortcut& sc) {
  const int lane = threadIdx.x & 31, tq = lane & 3;
  const int popc_a = __shfl_sync(0xffffffffu, acc_s[8][2 * h], lane & ~3);  // column 64, held by lane 4 g
  const int r = 2 * popc_a - sc.C;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int c = 8 * j + 2 * tq;
    in.residual[j] = make_float2(affine(s.aff[c], 4 * acc_s[j][2 * h] - r - s.wtot2[c]),
                                 affine(s.aff[c + 1], 4 * acc_s[j][2 * h + 1] - r - s.wtot2[c + 1]));
  }
}

// The 2 popc(W) terms of the taps outside the image (bits of miss) for the lane's column pairs
// 4 j + tq, handed to add(j, pair): one border-class vector for a 3x3 border pixel, else tap by tap.
template <class Tables, class Add>  // EpilogueTablesFor<kTaps>, kTaps >= g.T
__device__ __forceinline__ void for_missing_taps(uint32_t miss, const Geometry& g, const Tables& s, int tq, Add&& add) {
  if (!miss) return;
  const int c = g.T == 9 && g.KW == 3 ? border_class(miss) : -1;
  if (c >= 0) {
#pragma unroll
    for (int j = 0; j < 8; ++j) add(j, s.border[c][4 * j + tq]);
    return;
  }
  for (; miss; miss &= miss - 1) {
    const int t = __ffs(miss) - 1;
#pragma unroll
    for (int j = 0; j < 8; ++j) add(j, s.tap[t][4 * j + tq]);
  }
}

// Lane tq's 16 sign bits (in half tq & 1 of its word, zeros in the other half) joined with its
// neighbour's (tq ^ 1), then flipped: the row's word n0 / 32 + tq / 2 of one threshold set.
__device__ __forceinline__ uint32_t join_sign_halves(uint32_t half, const uint32_t (&flip)[2]) {
  half |= __shfl_xor_sync(0xffffffffu, half, 1);  // every lane shuffles: the mode is warp-uniform
  return half ^ flip[(threadIdx.x & 3) >> 1];
}

// Stores row m's sign word from sign_word(i), the word of threshold set i (SkipSignPack: 0 for a
// skip of -1, 1 for +1; each bit from the set its skip's sign picks), by the even lane of a pair.
template <class SignWord>
__device__ __forceinline__ void store_sign_word(const BinaryConvArgs& args, const Geometry& g, int m, int n0,
                                                SignWord&& sign_word) {
  const int tq = threadIdx.x & 3, Ow = (g.O + 31) / 32, word = n0 / 32 + (tq >> 1);
  uint32_t bits = sign_word(0);
  if (args.mode == BinaryEpilogue::SkipSignPack) {
    const uint32_t skip = skip_word(args, g, m, n0);
    bits = (sign_word(1) & skip) | (bits & ~skip);
  }
  if ((tq & 1) == 0 && m < g.M && word < Ow) static_cast<uint32_t*>(args.out)[(long long)m * Ow + word] = bits;
}

// SignPack and SkipSignPack, two channels a 32-bit word. The lane's columns 8 j + 2 tq + e are
// channels 16 tq + 8 e + j (slice_channel); with acc' = 4 acc - r + 2 popc(W & taps outside) =
// d + 2 wtot as in epilogue_row, the word
//   D_j = 4 (acc_j0 + 2^16 acc_j1) + (2^15 - r)(1 + 2^16) + border_j - (t_j0 + 2^16 t_j1)
// holds 2^15 + acc'_je - t_je in its half e. Each half stays in [0, 2^16) while
// |acc' - t| = |d - dmin| < 2^15, which dmin's clamp to [-K - 1, K + 1] makes true for
// K <= kPairedSignsMaxK, so nothing carries between the halves and bit 15 of half e is the
// compare (acc'_je >= t_je). A prmt with sign replication turns two such words into four
// 0x00 / 0xff bytes, and one AND-OR keeps one bit of each at its channel's place. On an H200
// (ncu, the one-warpgroup wgmma kernel, batch 256) that is 5% fewer instructions than a compare,
// shift and OR an output on ImageNet ResNet-18's 64-channel layer (24.9M against 26.3M, 8% less
// time) and 4% fewer at 256 channels (benchmarks/results/2026-12-03-h200-session22.txt).
constexpr int kPairedSignsMaxK = (1 << 14) - 1;
template <class Tables>  // EpilogueTablesFor<kTaps>, kTaps >= g.T
__device__ __forceinline__ void paired_signs_row(int32_t (&acc)[8][4], int h, int m, int r, uint32_t miss,
                                                 const Tables& s, const BinaryConvArgs& args, const Geometry& g,
                                                 int n0) {
  const int tq = threadIdx.x & 3;
  // D_j + t_j, in place of acc[j][2 h] (no extra registers); the border branch taken once a row,
  // not once a pair (ncu: a per-pair test cost more than the pairing saved).
  const uint32_t bias = static_cast<uint32_t>(32768 - r) * 0x10001u;
#pragma unroll
  for (int j = 0; j < 8; ++j)
    acc[j][2 * h] = static_cast<int32_t>((static_cast<uint32_t>(acc[j][2 * h]) << 2) +
                                         (static_cast<uint32_t>(acc[j][2 * h + 1]) << 18) + bias);
  for_missing_taps(miss, g, s, tq, [&](int j, int2 p) {
    acc[j][2 * h] += static_cast<int32_t>(static_cast<uint32_t>(p.x) + (static_cast<uint32_t>(p.y) << 16));
  });
  // The 32 sign bits of threshold set i: pairs j, j + 1 (j even) give bits j, 8 + j and
  // 16 + j + 1, 24 + j + 1; folded, lane tq's 16 land in half tq & 1 of word tq / 2.
  auto signs = [&](int i) {
    const uint4 t03 = s.tpair[i][tq][0], t47 = s.tpair[i][tq][1];
    const uint32_t t[8] = {t03.x, t03.y, t03.z, t03.w, t47.x, t47.y, t47.z, t47.w};
    uint32_t b = 0u;
#pragma unroll
    for (int j = 0; j < 8; j += 2) {
      const uint32_t d0 = static_cast<uint32_t>(acc[j][2 * h]) - t[j], d1 = static_cast<uint32_t>(acc[j + 1][2 * h]) - t[j + 1];
      b |= ptx::prmt(d0, d1, 0xFDB9u) & ((0x0101u << j) | (0x01010000u << (j + 1)));  // signs of bytes 1, 3, 5, 7
    }
    b = (b | __funnelshift_l(b, b, 16)) & (tq & 1 ? 0xffff0000u : 0x0000ffffu);
    return join_sign_halves(b, i ? s.flip_plus : s.flip);
  };
  store_sign_word(args, g, m, n0, signs);
}

// The epilogue of one row (8 h + g of the lane's m16 block) of the 64-column slice: output
// pixel m (>= M: nothing is written, but every lane must call: it shuffles), r and tap mask of
// that row. ahead: the row's residual read ahead (load_row_inputs), or null: read here (the
// mma.sync kernel, whose registers are full, and the modes reads_row_inputs_ahead leaves out; the
// skip word is always read here). acc is overwritten.
template <class Tables>  // EpilogueTablesFor<kTaps>, kTaps >= g.T
__device__ __forceinline__ void epilogue_row(int32_t (&acc)[8][4], int h, int m, int r, uint32_t mask,
                                             const Tables& s, const BinaryConvArgs& args, const Geometry& g,
                                             int n0, const RowInputs* ahead) {
  const int tq = threadIdx.x & 3;
  const uint32_t all_taps = (1u << g.T) - 1u;  // T <= 31
  const uint32_t miss = m < g.M ? ~mask & all_taps : 0u;
  if (packs_signs(args.mode) && g.T * g.C <= kPairedSignsMaxK) {
    paired_signs_row(acc, h, m, r, miss, s, args, g, n0);
    return;
  }
  // acc <- 4 acc - r + 2 popc(W & taps outside the image) = d + 2 wtot, in place (no extra
  // registers); the tap loop runs for border pixels only.
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 2; ++e) acc[j][2 * h + e] = 4 * acc[j][2 * h + e] - r;
  for_missing_taps(miss, g, s, tq, [&](int j, int2 p) {
    acc[j][2 * h] += p.x;
    acc[j][2 * h + 1] += p.y;
  });
  const int Ow = (g.O + 31) / 32;
  if (packs_signs(args.mode)) {
    // (K past kPairedSignsMaxK.) This lane's 16 channels are 16 tq + 8 e + j: bits 8 e + j of the
    // half word 16 (tq & 1) of word tq / 2; the neighbour lane (tq ^ 1) holds the other half.
    auto signs = [&](int i) {
      const int2(&thr)[kCols / 2] = i ? s.thr_plus : s.thr;
      uint32_t bits = 0u;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int2 t = thr[4 * j + tq];
        bits |= static_cast<uint32_t>(acc[j][2 * h] >= t.x) << j | static_cast<uint32_t>(acc[j][2 * h + 1] >= t.y)
                                                                     << (8 + j);
      }
      return join_sign_halves(bits << 16 * (tq & 1), i ? s.flip_plus : s.flip);
    };
    store_sign_word(args, g, m, n0, signs);
    return;
  }
  // Columns (= channels) 2 tq and 2 tq + 1 side by side: one 8-byte access (4 for Int16) when O
  // is even.
  // (ShortcutSignPack's residual always comes in `ahead`, from the shortcut's accumulators.)
  const bool pair = (g.O & 1) == 0,
             residual = args.mode == BinaryEpilogue::ResidualSignPack || args.mode == BinaryEpilogue::ShortcutSignPack;
  uint32_t bits[2] = {0u, 0u};  // ResidualSignPack's signs
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int c = 8 * j + 2 * tq, o = n0 + c;
    if (m >= g.M || o >= g.O) continue;
    const int2 w2 = s.thr[4 * j + tq];
    const int d0 = acc[j][2 * h] - w2.x, d1 = acc[j][2 * h + 1] - w2.y;
    const long long idx = (long long)m * g.O + o;
    const bool two = o + 1 < g.O;
    if (args.mode == BinaryEpilogue::Int32) {
      int32_t* out = static_cast<int32_t*>(args.out) + idx;
      if (pair) {
        *reinterpret_cast<int2*>(out) = make_int2(d0, d1);
      } else {
        out[0] = d0;
        if (two) out[1] = d1;
      }
      continue;
    }
    if (args.mode == BinaryEpilogue::Int16) {  // |d| <= K <= 32767: the casts are exact
      int16_t* out = static_cast<int16_t*>(args.out) + idx;
      if (pair) {
        *reinterpret_cast<uint32_t*>(out) = (static_cast<uint32_t>(d0) & 0xffffu) | static_cast<uint32_t>(d1) << 16;
      } else {
        out[0] = static_cast<int16_t>(d0);
        if (two) out[1] = static_cast<int16_t>(d1);
      }
      continue;
    }
    float y0 = affine(s.aff[c], d0), y1 = affine(s.aff[c + 1], d1);
    if (args.mode == BinaryEpilogue::AffineRelu) y0 = fmaxf(y0, 0.f), y1 = fmaxf(y1, 0.f);
    if (residual) {
      const float2 r2 = ahead ? ahead->residual[j] : residual_pair(args, g, m, o);
      y0 += r2.x, y1 += r2.y;
      if (y0 >= 0.f) bits[j >> 2] |= 1u << (8 * (j & 3) + 2 * tq);
      if (two && y1 >= 0.f) bits[j >> 2] |= 2u << (8 * (j & 3) + 2 * tq);
    }
    if (!args.out) continue;  // ResidualSignPack without its sum: the signs only
    float* out = static_cast<float*>(args.out) + idx;
    if (pair) {
      *reinterpret_cast<float2*>(out) = make_float2(y0, y1);
    } else {
      out[0] = y0;
      if (two) out[1] = y1;
    }
  }
  if (residual) {  // warp-uniform: every lane shuffles
#pragma unroll
    for (int w = 0; w < 2; ++w) {
      bits[w] |= __shfl_xor_sync(0xffffffffu, bits[w], 1);
      bits[w] |= __shfl_xor_sync(0xffffffffu, bits[w], 2);
    }
    const int word = n0 / 32 + tq;
    if (tq < 2 && m < g.M && word < Ow) args.out_bits[(long long)m * Ow + word] = tq == 0 ? bits[0] : bits[1];
  }
}

// The sm_90a kernels (binary_conv_wgmma.cu, binary_conv_wgmma_ws.cu) apply: built for sm_90a, a
// compute capability 9.0 device, K short enough for shared memory, and not MDQ_W1A1_KERNEL=mma in
// the environment. Otherwise the mma.sync kernel runs.
bool wgmma_applies(const ConvShape& g);
// Runs one when they apply (true), else returns false: the warp-specialised kernel where it takes
// a, else binary_conv_wgmma.cu's. MDQ_W1A1_KERNEL=ws forces the first wherever it can run,
// =wgmma the second.
bool conv2d_wgmma(const BinaryConvArgs& a, const Geometry& g);
// The warp-specialised form (binary_conv_wgmma_ws.cu), for a that wgmma_applies to: launches and
// returns true where it takes a's mode (not ResidualSignPack or ShortcutSignPack), its shared
// memory fits and, unless `forced`, two of its CTAs fit an SM (where it measured faster).
bool conv2d_wgmma_ws(const BinaryConvArgs& a, const Geometry& g, bool forced);
// binary_conv_fuses_shortcut (binary_conv.h) for a of shape g.
bool fuses_shortcut(const BinaryConvArgs& a, const ConvShape& g);

}  // namespace mdq::kernels::binary

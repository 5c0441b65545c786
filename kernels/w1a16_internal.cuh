// What the W1A16 / W2A16 convolution paths share (kernels/w1a16_conv.cu: the mma.sync fast path
// and the entry point; kernels/w1a16_wgmma.cu: the sm_90a path; kernels/w1a16_general.cu: any
// channel count): the problem geometry, the bf16 patterns of ±1, and each path's launcher.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/conv_shape.h"
#include "kernels/cuda_common.h"
#include "kernels/ptx.cuh"
#include "kernels/w1a16_conv.h"

namespace mdq::kernels::w1a16 {

// bf16 bit patterns of +1, -1.
constexpr uint32_t kPlus = 0x3F80u, kMinus = 0xBF80u;

// Two registers of bf16 pairs from packed sign bits, for an mma fragment (m16n8k16's B, wgmma's
// register A): bits 0, 1 of m give k = 2t, 2t+1 (r0) and bits 8, 9 give k = 2t+8, 2t+9 (r1), bit
// set = +1. m * (2^15 + 2^30) moves bit 0 to 15 and bit 1 to 31, m * (2^7 + 2^22) bits 8, 9 to
// 15, 31 (the shifted copies land on distinct bits, so nothing carries), then XOR with the
// pattern (-1, -1) clears the sign of each +1.
__device__ __forceinline__ void expand_signs(uint32_t m, uint32_t& r0, uint32_t& r1) {
  r0 = ((m * 0x40008000u) & 0x80008000u) ^ 0xBF80BF80u;
  r1 = ((m * 0x00400080u) & 0x80008000u) ^ 0xBF80BF80u;
}
// Ternary: z (the nonzero plane, masked alike) spread the same way, bit 15 of each half widened
// to bits 7..15, which cover every set bit of ±1 in bf16: a 0 weight becomes +0.
__device__ __forceinline__ void mask_zeros(uint32_t z, uint32_t& r0, uint32_t& r1) {
  r0 &= (((z * 0x40008000u) >> 8) & 0x00800080u) * 0x1FFu;
  r1 &= (((z * 0x00400080u) >> 8) & 0x00800080u) * 0x1FFu;
}

struct Geometry : ConvShape {  // Ktot = T*Cw words per output channel
  int CB;                       // fast path: 64-channel blocks per tap
  long long M;
};

// The implicit GEMM's geometry of a.
inline Geometry make_geometry(const W1A16ConvArgs& a) {
  Geometry g{};
  static_cast<ConvShape&>(g) = conv_shape(a);
  g.CB = (a.C + 63) / 64;
  g.M = static_cast<long long>(a.N) * g.OH * g.OW;
  return g;
}

// Whether the sm_90a kernels (kernels/w1a16_wgmma.cu, the workshop's dev/kernels/w1a16_ws.cu)
// can run a: a build with sm_90a code on a compute capability 9.0 GPU; C % 8 == 0 and 16-byte
// aligned activations (16-byte copies); at most 32 taps (ChunkGather's mask); pixel indices in
// int (the row table) and element indices below 2^32; a one-dimensional grid (tiles of at least
// 128 pixels x 64 channels).
inline bool sm90a_kernels_apply(const W1A16ConvArgs& a, const Geometry& g) {
#ifndef MDQ_HAS_SM90A
  (void)a, (void)g;
  return false;
#else
  static const bool hopper = cuda::compute_capability() == 90;
  return hopper && g.C % 8 == 0 && g.T <= 32 && reinterpret_cast<uintptr_t>(a.x) % 16 == 0 &&
         static_cast<long long>(a.N) * a.H * a.W < (1LL << 31) - (1LL << 20) &&
         static_cast<long long>(a.N) * a.H * a.W * a.C < (1LL << 32) &&
         (g.M + 127) / 128 * ((g.O + 63) / 64) <= 0x7fffffffLL;
#endif
}

// A row-table entry of the implicit GEMM's output pixel m: {pixel index of its (0, 0) tap, ih0,
// iw0}; past M an ih0 that no tap brings into range.
__device__ __forceinline__ int4 pixel_row(const Geometry& g, long long m) {
  int4 v = make_int4(0, -(1 << 28), 0, 0);
  if (m < g.M) {
    const int ohw = g.OH * g.OW;
    const int n = static_cast<int>(m / ohw), rem = static_cast<int>(m - static_cast<long long>(n) * ohw);
    const int oh = rem / g.OW, ow = rem - oh * g.OW;
    v.y = oh * g.stride - g.pad;
    v.z = ow * g.stride - g.pad;
    v.x = (n * g.H + v.y) * g.W + v.z;
  }
  return v;
}

// ---- Pieces of the sm_90a kernels (kernels/w1a16_wgmma.cu, the workshop's
// dev/kernels/w1a16_ws.cu; the TMA-fed kernels/w1a16_wgmma_tma.cu takes ChunkWalk, the A build and
// the epilogue): a chunk is the 64 channels (block cb) of tap (kh, kw) for a tile of pixel rows,
// staged as 128-byte rows in wgmma's 128-byte swizzle, followed (cp.async kernels) by the tile's
// packed weight words of that chunk.

// The k loop's chunk order, as the kernels walk it: channel block cb fastest, then kw, then kh.
struct ChunkWalk {
  int kh = 0, kw = 0, cb = 0;
  __device__ __forceinline__ void next(const Geometry& g) {
    if (++cb == g.CB) {
      cb = 0;
      if (++kw == g.KW) {
        kw = 0;
        ++kh;
      }
    }
  }
};

// A gather row of output pixel m (pixel_row): {pixel index of its (0, 0) tap, mask of its taps
// inside the image, bit kh KW + kw}; past M no taps. Found once a row and tile, by one thread: the
// eight threads that copy a row read it from the tile's table (a 64-channel layer's tile is only 9
// chunks, and 8 threads finding each row measured 14% slower there).
__device__ __forceinline__ int2 gather_row(const Geometry& g, long long m) {
  const int4 v = pixel_row(g, m);
  uint32_t wm = 0, taps = 0;
  for (int kw = 0; kw < g.KW; ++kw) wm |= static_cast<uint32_t>(static_cast<unsigned>(v.z + kw) < static_cast<unsigned>(g.W)) << kw;
  for (int kh = 0; kh < g.KH; ++kh)
    if (static_cast<unsigned>(v.y + kh) < static_cast<unsigned>(g.H)) taps |= wm << (kh * g.KW);
  return make_int2(v.x, static_cast<int>(taps));
}

// Thread t of THREADS's share of a tile's activation gather: 16-byte piece cc = t % 8 of pixel
// rows t / 8 + i THREADS / 8, stored at chunk cc ^ (row % 8) (the swizzle). What a row needs for
// every chunk is read once a tile and kept in registers: the element index of its (0, 0) tap at
// channel 8 cc (unsigned: where that tap is padding it wraps, and comes back in range for every
// tap inside the image) and the mask of its taps inside the image (bit kh KW + kw; the launchers
// take KH KW <= 32). A copy is then a bit test, an add and the cp.async: measured on an H200, the
// copies' instructions (a row-table load, the bounds and the index math each chunk) were what
// limited both sm_90a kernels' issue.
template <int ROWS, int THREADS>
struct ChunkGather {
  static constexpr int kRows = ROWS * 8 / THREADS;
  static_assert(ROWS * 8 % THREADS == 0 && THREADS % 64 == 0, "whole pieces a thread, rows % 8 fixed a thread");
  uint32_t base[kRows], taps[kRows];
  uint32_t dst;  // the piece's offset in a stage, row t / 8 (+ i THREADS / 8 rows: same swizzle)
  int cc;
  // rows: the tile's gather_row table.
  __device__ __forceinline__ ChunkGather(const int2* rows, const Geometry& g, int t) {
    cc = t & 7;
    const int r0 = t >> 3;
    dst = r0 * 128 + ((cc ^ (r0 & 7)) << 4);
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
      const int2 v = rows[r0 + i * (THREADS / 8)];
      base[i] = static_cast<uint32_t>(v.x) * static_cast<uint32_t>(g.C) + 8 * cc;
      taps[i] = static_cast<uint32_t>(v.y);
    }
  }
  // The copies of chunk (tap = kh KW + kw, channel block cb) into stage (a 1024-byte aligned
  // shared address); zeros for padding and channels past C. The element indices are 32-bit (the
  // launchers bound N H W C below 2^32): one IMAD.WIDE.U32 an address.
  __device__ __forceinline__ void copy(uint32_t stage, const uint16_t* x, const Geometry& g, int kh, int kw,
                                       int cb) const {
    const int tap = kh * g.KW + kw;
    const uint32_t offset = static_cast<uint32_t>((kh * g.W + kw) * g.C + 64 * cb);
    const bool c_ok = 64 * cb + 8 * cc < g.C;
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
      const bool ok = c_ok && ((taps[i] >> tap) & 1u);
      // (the element index, not the pointer, picked: one select, not a 64-bit one)
      const uint32_t e = ok ? base[i] + offset : 0u;
      // .cg (L2 only): through L1 (.ca, for the overlapping taps) measured 5-10% slower
      ptx::cp_async16_zfill_u32(stage + dst + i * (THREADS / 8) * 128, x + e, ok);
    }
  }
};

// Thread t of THREADS's copies of the packed weight words of a chunk, for CHANNELS output channels
// from n0: the stage's [plane][channel][2 words] (word 2 cb, 2 cb + 1 of the tap's Cw), its word
// idx = t + THREADS k being channel idx / 2 % CHANNELS of plane idx / 2 / CHANNELS.
template <int CHANNELS, int PLANES, int THREADS>
struct WeightCopies {
  static constexpr int kWords = 2 * PLANES * CHANNELS, kCopies = (kWords + THREADS - 1) / THREADS;
  const uint32_t* src[kCopies];
  bool ok[kCopies];
  int t;
  __device__ __forceinline__ WeightCopies(const W1A16ConvArgs& a, const Geometry& g, int n0, int t_) : t(t_) {
#pragma unroll
    for (int k = 0; k < kCopies; ++k) {
      const int idx = t + k * THREADS, channel = (idx >> 1) % CHANNELS, plane = (idx >> 1) / CHANNELS;
      ok[k] = idx < kWords && n0 + channel < g.O;
      src[k] = (plane ? a.nonzero : a.sign) + (ok[k] ? static_cast<long long>(n0 + channel) * g.Ktot : 0);
    }
  }
  __device__ __forceinline__ void copy(uint32_t dst, const Geometry& g, int kh, int kw, int cb) const {
    const int tap_word = (kh * g.KW + kw) * g.Cw;
#pragma unroll
    for (int k = 0; k < kCopies; ++k) {
      const int idx = t + k * THREADS, word = 2 * cb + (idx & 1);
      if (idx < kWords) ptx::cp_async_gather<4>(dst + 4 * idx, src[k], tap_word + word, ok[k] && word < g.Cw);
    }
  }
};

// wgmma's register A of one chunk for a warp: rows a_row and a_row + 8 of the stage's weight
// words w (CHANNELS channels a plane), k = 2 tq (+1, +8, +9) of each of the 4 k16 steps
// (mma.sync m16n8k16's A layout, which wgmma's register A keeps per warp). Register a[s][r + 2 h]
// (row a_row + 8 r) holds k = 16 s + 8 h + 2 tq in its low bf16 and k + 1 in its high one.
//
// The bits are moved by byte sign: P = word << (7 - 2 tq) puts bit k (16 s' + 8 h + 2 tq of the
// word, s' = s % 2) at the sign bit of byte b = 2 s' + h, and Q = word << (6 - 2 tq) bit k + 1;
// a prmt that replicates the sign bit of byte b of P into bytes 0-1 and of Q into bytes 2-3 gives
// 0xffff / 0 halves (bit set / clear), and one LOP3 keeps bit 15 of each half and XORs the
// pattern (-1, -1): set = +1 (0x3F80), clear = -1 (0xBF80). Ternary: the nonzero plane's halves
// from the same prmt AND the register (a 0 weight becomes +0). Two instructions a register and
// two shifts a word, against an extract, an IMAD, an AND and an XOR a register before (ncu, H200:
// the A build was half the k loop's instructions).
__device__ __forceinline__ uint32_t byte_signs(uint32_t p, uint32_t q, int b) {
  const uint32_t lo = 0x8u | b, hi = 0x8u | (4 + b);
  return ptx::prmt(p, q, lo | lo << 4 | hi << 8 | hi << 12);
}
// (h & 0x80008000) ^ pattern as one LOP3: the pattern is passed in a register, since a LOP3 takes
// one immediate and the two constants otherwise made it an AND and an XOR.
__device__ __forceinline__ uint32_t signs_to_bf16(uint32_t h, uint32_t pattern) {
  uint32_t d;
  asm("lop3.b32 %0, %1, 0x80008000, %2, 0x6A;\n" : "=r"(d) : "r"(h), "r"(pattern));
  return d;
}
// The stage's weight words of a thread's two rows (a_row, a_row + 8), per plane: read apart from
// the A build so that the default kernel can issue the next chunk's reads while this chunk's
// MMAs still hold the A registers.
template <bool TERNARY>
struct WeightWords {
  uint32_t w[TERNARY ? 2 : 1][2][2];  // [plane][row][steps 0-1, 2-3]
};
template <int CHANNELS, bool TERNARY>
__device__ __forceinline__ WeightWords<TERNARY> load_weight_words(const uint8_t* w, int a_row) {
  WeightWords<TERNARY> words;
#pragma unroll
  for (int plane = 0; plane < (TERNARY ? 2 : 1); ++plane)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const uint2 v = *reinterpret_cast<const uint2*>(w + plane * CHANNELS * 8 + 8 * (a_row + 8 * r));
      words.w[plane][r][0] = v.x;
      words.w[plane][r][1] = v.y;
    }
  return words;
}
template <bool TERNARY>
__device__ __forceinline__ void weight_fragments(const WeightWords<TERNARY>& words, int tq, uint32_t (&a)[4][4]) {
  const uint32_t pattern = (kMinus << 16) | kMinus;
  // f(halves, a[s][r + 2 h]) for each step s, row r and half h, from one plane's words.
  auto each_register = [&](const uint32_t (&plane)[2][2], auto&& f) {
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const uint32_t p = plane[r][half] << (7 - 2 * tq), q = plane[r][half] << (6 - 2 * tq);
#pragma unroll
        for (int s2 = 0; s2 < 2; ++s2)
#pragma unroll
          for (int h = 0; h < 2; ++h) f(byte_signs(p, q, 2 * s2 + h), a[2 * half + s2][r + 2 * h]);
      }
  };
  each_register(words.w[0], [&](uint32_t halves, uint32_t& reg) { reg = signs_to_bf16(halves, pattern); });
  if constexpr (TERNARY) each_register(words.w[1], [](uint32_t halves, uint32_t& reg) { reg &= halves; });
}
template <int CHANNELS, bool TERNARY>
__device__ __forceinline__ void weight_fragments(const uint8_t* w, int a_row, int tq, uint32_t (&a)[4][4]) {
  weight_fragments<TERNARY>(load_weight_words<CHANNELS, TERNARY>(w, a_row), tq, a);
}

// Epilogue, first half: a warp's m64 accumulators, acc[j][2h+e] = D[16 warp + 8h + gq][8j + 2tq
// + e], as y = acc scale + shift (ReLU) into tile[pixel][channel] (f32, STRIDE floats a pixel) at
// channels c0 + 8h + gq (c0 = the warp's first channel in the CTA's tile), pixels pixel0 + 8j + ...
template <int STRIDE, int NJ>
__device__ __forceinline__ void acc_to_tile(const float (&acc)[NJ][4], float* tile, int c0, int pixel0, int n0,
                                            const W1A16ConvArgs& args, const Geometry& g, int gq, int tq) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int c = c0 + 8 * h + gq, o = min(n0 + c, g.O - 1);
    const float sc = args.scale ? __ldg(args.scale + o) : 1.f, sh = args.shift ? __ldg(args.shift + o) : 0.f;
#pragma unroll
    for (int j = 0; j < NJ; ++j)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float y = acc[j][2 * h + e] * sc + sh;
        if (args.relu) y = fmaxf(y, 0.f);
        tile[(pixel0 + 8 * j + 2 * tq + e) * STRIDE + c] = y;
      }
  }
}

// Epilogue, second half: thread t of `threads` writes the tile (PIXELS x CHANNELS from pixel m0,
// channel n0) to the NHWC output in 16-byte pieces along the channels.
template <int PIXELS, int CHANNELS, int STRIDE>
__device__ __forceinline__ void store_tile(const float* tile, long long m0, int n0, const W1A16ConvArgs& args,
                                           const Geometry& g, int t, int threads) {
  const int per = args.out_bf16 ? 8 : 4;  // channels a 16-byte piece
  const int pieces = CHANNELS / per;
  const bool aligned = g.O % per == 0 && reinterpret_cast<uintptr_t>(args.out) % 16 == 0;
  for (int i = t; i < PIXELS * pieces; i += threads) {
    const int r = i / pieces, c = (i - r * pieces) * per;
    const long long m = m0 + r;
    const int o = n0 + c;
    if (m >= g.M || o >= g.O) continue;
    const float* v = tile + r * STRIDE + c;
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
}

// A shared-memory base rounded up to 1024 bytes (the 128-byte swizzle is a function of the
// address), as an offset from the dynamic buffer, not a rounded generic address: the compiler then
// still knows the reads through it are shared-memory reads (LDS, where a rounded generic pointer
// made them LD; measured, with 64-bit index math, a third of the loop's instructions).
__device__ __forceinline__ uint8_t* align_1024(uint8_t* smem_raw) {
  const uint32_t raw = ptx::smem_u32(smem_raw);
  return smem_raw + (((raw + 1023u) & ~1023u) - raw);
}

// Opts a launcher's kernel in to `bytes` of dynamic shared memory (above 48 KB needs it) and to
// the largest shared-memory carveout; each launcher calls it once, from a static of its own (the
// mma.sync launcher, launch_tiles).
template <class Kernel>
bool opt_in_shared_memory(Kernel kernel, int bytes) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                  cudaSharedmemCarveoutMaxShared));
  return true;
}

// Launches a tile kernel of the sm_90a paths, KERNEL(lead..., a, g, channel_tiles) (lead: e.g.
// the TMA kernel's tensor map), as one CTA of `threads` threads and `bytes` of dynamic shared
// memory per tile of `pixels` output pixels x `channels` output channels, channel tiles varying
// fastest; the opt-in to that shared memory once per kernel.
template <auto KERNEL, class... Lead>
void launch_tiles(int threads, int bytes, int pixels, int channels, const W1A16ConvArgs& a, const Geometry& g,
                  const Lead&... lead) {
  static const bool configured = opt_in_shared_memory(KERNEL, bytes);
  (void)configured;
  const int channel_tiles = (g.O + channels - 1) / channels;
  const long long ctas = (g.M + pixels - 1) / pixels * channel_tiles;
  KERNEL<<<static_cast<unsigned>(ctas), threads, bytes, cuda::stream()>>>(lead..., a, g, channel_tiles);
  CUDA_CHECK_LAUNCH();
}

// Any C (e.g. 3 or 130): k-tile = one packed word, weights expanded in shared memory.
template <bool TERNARY>
void launch_general_path(const W1A16ConvArgs& a, const Geometry& g);

// sm_90a (kernels/w1a16_wgmma.cu): launches and returns true where it applies -- where
// sm90a_kernels_apply, and not MDQ_W1A16_KERNEL=mma in the environment (the A/B switch to the
// mma.sync kernel). The 256-pixel TMA kernel where it takes a, else the cp.async kernel;
// MDQ_W1A16_KERNEL=tma runs the TMA kernel wherever it can, =cpasync never.
bool conv2d_wgmma(const W1A16ConvArgs& a, const Geometry& g);
// The 256-pixel tile fed by TMA im2col loads (kernels/w1a16_wgmma_tma.cu), for a that
// sm90a_kernels_apply to: launches and returns true where it can (binary weights, O > 64, the
// driver takes the tensor map) and, unless `forced`, where it measured faster than the cp.async
// kernel (a long k loop, the grid's last wave nearly full).
bool conv2d_wgmma_tma(const W1A16ConvArgs& a, const Geometry& g, bool forced);

}  // namespace mdq::kernels::w1a16

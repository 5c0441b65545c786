// W1A1 convolution as an implicit GEMM on the b1 tensor cores (DESIGN.md E12), AND+popc only:
// XOR+popc is emulated on sm_90 (E12's measurements), AND+popc runs at ~10 POPS via mma.sync.
//
// GEMM view: M = N*OH*OW output pixels (rows), N_gemm = O output channels (columns),
// K = KH*KW*Cw words of 32 bits, word k = (tap k / Cw, channel word k % Cw); a zero-padded
// k-tile tail adds nothing because both operands are 0 there.
//
// The mask (E12 with M): zero padding contributes 0, not ±1, and channels padded up to 32 bits
// contribute nothing. For output pixel p and channel o, with V(p) the taps inside the image,
//   a·w = Σ_{t∈V(p), c<C} (2A-1)(2W-1) = 4 popc(A&W&M) - 2 popc(A&M) - 2 popc(W&M) + popc(M)
// and each term comes cheaply:
//   popc(A&W&M) = popc(A&W)       the gathered A is 0 outside the image and in padded channels
//                                 (packing writes 0 there), so the MMA over everything is exact;
//   popc(A&M)   = Σ_{t∈V(p)} pixel_popc[input pixel of tap t]   (one popc per input pixel);
//   popc(W&M)   = Σ_{t∈V(p)} tap_popc[o][t], = tap_popc[o][T] (the total) for interior pixels;
//   popc(M)     = |V(p)| · C.
// Weights' padded channel bits must be 0 (packing guarantees it) so tap_popc counts only real
// channels.
//
// Tiling: a CTA computes BM pixels x BN channels, k-tiles of BKW words staged in shared memory
// by cp.async (gathered per tap, zero-filled when the tap is outside the image: src-size 0), two
// stages. Warps own WM x WN sub-tiles and issue mma.m16n8k256 on fragments read from shared
// memory; rows are padded by 4 words so those reads are bank-conflict free.
//
// Fragment layout of mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32 (PTX ISA, "Matrix
// Fragments for mma.m16n8k256"; the same indexing appears in public kernels found with
// find_string "m16n8k256"): lane = 4 g + t;
//   A (16 x 256 bits, row): a0 = row g, bits [32t, 32t+32); a1 = row g+8, same bits;
//                           a2 = row g, bits [128+32t, ...); a3 = row g+8, bits [128+32t, ...)
//   B (256 x 8, col):       b0 = column g, bits [32t, 32t+32); b1 = column g, bits [128+32t, ...)
//   C/D (16 x 8 s32):       c0, c1 = row g, columns 2t, 2t+1; c2, c3 = row g+8, same columns.
// The order of bits inside a word does not matter for AND+popc as long as A and B agree.
#include "engine/cuda_context.h"
#include "kernels/binary_conv.h"

namespace mdq::kernels {
namespace {

__device__ __forceinline__ void mma_b1_and_popc(int32_t (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// cp.async of 4, 8 or 16 bytes; valid == false writes zeros (src-size 0 reads nothing).
template <int BYTES>
__device__ __forceinline__ void cp_async_zfill(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int src_size = valid ? BYTES : 0;
  if constexpr (BYTES == 16)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_size) : "memory");
  else
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(s), "l"(gmem), "n"(BYTES), "r"(src_size)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_one() { asm volatile("cp.async.wait_group 1;\n" ::: "memory"); }

struct Geometry {
  int N, H, W, C, Cw, O, KH, KW, stride, pad, OH, OW, T, Ktot;
  long long M;
};

template <int BM, int BN, int BKW, int WM, int WN, int VEC>
__global__ void __launch_bounds__((BM / WM) * (BN / WN) * 32)
    binary_conv_kernel(BinaryConvArgs args, Geometry g) {
  constexpr int WARPS_N = BN / WN;
  constexpr int THREADS = (BM / WM) * WARPS_N * 32;
  constexpr int MT = WM / 16, NT = WN / 8;
  constexpr int LDS = BKW + 4;              // padded row stride in words
  constexpr int CPR = BKW / VEC;            // cp.async chunks per row
  constexpr int ROW_STEP = THREADS / CPR;   // rows between a thread's consecutive chunks
  constexpr int A_ITERS = BM / ROW_STEP;
  constexpr int B_ITERS = (BN + ROW_STEP - 1) / ROW_STEP;
  static_assert(THREADS % CPR == 0 && BM % ROW_STEP == 0, "tile shape");
  static_assert(BKW % 8 == 0 && WN == 32, "k-tile is whole k256 steps; SignPack needs 32-column warps");

  __shared__ __align__(16) uint32_t As[2][BM * LDS];
  __shared__ __align__(16) uint32_t Bs[2][BN * LDS];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int gq = lane >> 2, tq = lane & 3;
  const long long m0 = (long long)blockIdx.x * BM;
  const int n0 = blockIdx.y * BN;
  const int cc = tid % CPR;

  // Per-row gather state for this thread's A rows: batch offset, top-left input coordinate.
  int a_nh[A_ITERS], a_ih0[A_ITERS], a_iw0[A_ITERS];
#pragma unroll
  for (int i = 0; i < A_ITERS; ++i) {
    const long long m = m0 + tid / CPR + i * ROW_STEP;
    if (m < g.M) {
      const int n = (int)(m / ((long long)g.OH * g.OW));
      const int r = (int)(m % ((long long)g.OH * g.OW));
      a_nh[i] = n * g.H;
      a_ih0[i] = (r / g.OW) * g.stride - g.pad;
      a_iw0[i] = (r % g.OW) * g.stride - g.pad;
    } else {
      a_nh[i] = 0;
      a_ih0[i] = -(1 << 28);  // never inside the image
      a_iw0[i] = 0;
    }
  }

  auto load_stage = [&](int stage, int kt) {
    const int k = kt * BKW + cc * VEC;  // first word of this thread's chunk; VEC words share a tap
    const bool kvalid = k < g.Ktot;
    const int tap = k / g.Cw, cw = k - tap * g.Cw;
    const int kh = tap / g.KW, kw = tap - kh * g.KW;
#pragma unroll
    for (int i = 0; i < A_ITERS; ++i) {
      const int row = tid / CPR + i * ROW_STEP;
      const int ih = a_ih0[i] + kh, iw = a_iw0[i] + kw;
      const bool valid = kvalid && ih >= 0 && ih < g.H && iw >= 0 && iw < g.W;
      const uint32_t* src = valid ? args.x + ((long long)(a_nh[i] + ih) * g.W + iw) * g.Cw + cw : args.x;
      cp_async_zfill<VEC * 4>(&As[stage][row * LDS + cc * VEC], src, valid);
    }
#pragma unroll
    for (int i = 0; i < B_ITERS; ++i) {
      const int row = tid / CPR + i * ROW_STEP;
      if (row < BN) {
        const int o = n0 + row;
        const bool valid = kvalid && o < g.O;
        const uint32_t* src = valid ? args.w + (long long)o * g.Ktot + k : args.w;
        cp_async_zfill<VEC * 4>(&Bs[stage][row * LDS + cc * VEC], src, valid);
      }
    }
  };

  int32_t acc[MT][NT][4];
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0;

  const int rb = (warp / WARPS_N) * WM, cb = (warp % WARPS_N) * WN;
  const int nk = (g.Ktot + BKW - 1) / BKW;
  load_stage(0, 0);
  cp_async_commit();
  for (int kt = 0; kt < nk; ++kt) {
    if (kt + 1 < nk) load_stage((kt + 1) & 1, kt + 1);
    cp_async_commit();  // possibly empty: keeps "wait for all but the newest group" exact
    cp_async_wait_one();
    __syncthreads();
    const uint32_t* as = As[kt & 1];
    const uint32_t* bs = Bs[kt & 1];
#pragma unroll
    for (int s = 0; s < BKW / 8; ++s) {
      uint32_t a[MT][4], b[NT][2];
#pragma unroll
      for (int i = 0; i < MT; ++i) {
        const int r = rb + 16 * i + gq;
        a[i][0] = as[r * LDS + 8 * s + tq];
        a[i][1] = as[(r + 8) * LDS + 8 * s + tq];
        a[i][2] = as[r * LDS + 8 * s + 4 + tq];
        a[i][3] = as[(r + 8) * LDS + 8 * s + 4 + tq];
      }
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const int c = cb + 8 * j + gq;
        b[j][0] = bs[c * LDS + 8 * s + tq];
        b[j][1] = bs[c * LDS + 8 * s + 4 + tq];
      }
#pragma unroll
      for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j) mma_b1_and_popc(acc[i][j], a[i], b[j]);
    }
    __syncthreads();  // the next iteration's cp.async overwrites the buffer just read
  }

  // ---- epilogue: E12 correction terms, then the requested output
  const int T1 = g.T + 1;
#pragma unroll
  for (int i = 0; i < MT; ++i) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const long long m = m0 + rb + 16 * i + gq + 8 * h;
      const bool mvalid = m < g.M;
      int sum_a = 0, nvalid = 0;
      unsigned long long tapmask = 0;
      if (mvalid) {
        const int n = (int)(m / ((long long)g.OH * g.OW));
        const int r = (int)(m % ((long long)g.OH * g.OW));
        const int ih0 = (r / g.OW) * g.stride - g.pad, iw0 = (r % g.OW) * g.stride - g.pad;
        for (int kh = 0; kh < g.KH; ++kh)
          for (int kw = 0; kw < g.KW; ++kw) {
            const int ih = ih0 + kh, iw = iw0 + kw;
            if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) {
              sum_a += args.pixel_popc[((long long)n * g.H + ih) * g.W + iw];
              tapmask |= 1ull << (kh * g.KW + kw);
              ++nvalid;
            }
          }
      }
      const bool interior = nvalid == g.T;
      uint32_t bits = 0;
#pragma unroll
      for (int j = 0; j < NT; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int col = cb + 8 * j + 2 * tq + e;
          const int o = n0 + col;
          if (!mvalid || o >= g.O) continue;
          int sum_w = 0;
          if (interior) {
            sum_w = args.tap_popc[(long long)o * T1 + g.T];
          } else {
            for (unsigned long long mk = tapmask; mk; mk &= mk - 1)
              sum_w += args.tap_popc[(long long)o * T1 + __ffsll((long long)mk) - 1];
          }
          const int d = 4 * acc[i][j][2 * h + e] - 2 * sum_a - 2 * sum_w + nvalid * g.C;
          const long long idx = m * g.O + o;
          if (args.mode == BinaryEpilogue::Int32) {
            static_cast<int32_t*>(args.out)[idx] = d;
            continue;
          }
          float y = (args.scale ? args.scale[o] : 1.f) * (float)d + (args.shift ? args.shift[o] : 0.f);
          if (args.mode == BinaryEpilogue::SignPack) {
            if (y >= 0.f) bits |= 1u << (8 * j + 2 * tq + e);
          } else {
            if (args.mode == BinaryEpilogue::AffineRelu) y = fmaxf(y, 0.f);
            static_cast<float*>(args.out)[idx] = y;
          }
        }
      }
      if (args.mode == BinaryEpilogue::SignPack) {  // warp-uniform branch: all lanes shuffle
        bits |= __shfl_xor_sync(0xffffffffu, bits, 1);
        bits |= __shfl_xor_sync(0xffffffffu, bits, 2);
        const int Ow = (g.O + 31) / 32, word = (n0 + cb) / 32;
        if (tq == 0 && mvalid && word < Ow) static_cast<uint32_t*>(args.out)[m * Ow + word] = bits;
      }
    }
  }
}

template <int BM, int BN, int BKW, int WM, int WN>
void launch(const BinaryConvArgs& a, const Geometry& g) {
  constexpr int THREADS = (BM / WM) * (BN / WN) * 32;
  const dim3 grid((unsigned)((g.M + BM - 1) / BM), (unsigned)((g.O + BN - 1) / BN));
  // Widest cp.async whose words stay inside one tap (64 channels: Cw = 2 -> 8 bytes).
  if (g.Cw % 4 == 0)
    binary_conv_kernel<BM, BN, BKW, WM, WN, 4><<<grid, THREADS, 0, cuda::stream()>>>(a, g);
  else if (g.Cw % 2 == 0)
    binary_conv_kernel<BM, BN, BKW, WM, WN, 2><<<grid, THREADS, 0, cuda::stream()>>>(a, g);
  else
    binary_conv_kernel<BM, BN, BKW, WM, WN, 1><<<grid, THREADS, 0, cuda::stream()>>>(a, g);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void binary_conv2d(const BinaryConvArgs& a) {
  Geometry g{};
  g.N = a.N; g.H = a.H; g.W = a.W; g.C = a.C; g.Cw = (a.C + 31) / 32; g.O = a.O;
  g.KH = a.KH; g.KW = a.KW; g.stride = a.stride; g.pad = a.pad;
  g.OH = conv_out_size(a.H, a.KH, a.stride, a.pad);
  g.OW = conv_out_size(a.W, a.KW, a.stride, a.pad);
  g.T = a.KH * a.KW;
  g.Ktot = g.T * g.Cw;
  g.M = (long long)a.N * g.OH * g.OW;
  if (g.M <= 0 || g.O <= 0) return;
  // Narrow layers get taller tiles so no half-empty 128-column tile; short K gets 256-bit
  // k-tiles so less of the last tile is zero padding (ResNet's 64-channel 3x3: 18 words).
  if (g.O <= 64)
    launch<256, 64, 8, 64, 32>(a, g);
  else if (g.Ktot <= 48)
    launch<128, 128, 8, 64, 32>(a, g);
  else
    launch<128, 128, 16, 64, 32>(a, g);
}

}  // namespace mdq::kernels

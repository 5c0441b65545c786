// W1A1 convolution as an implicit GEMM on the b1 tensor cores (DESIGN.md E12), AND+popc only:
// XOR+popc is emulated on sm_90 (E12's measurements), AND+popc runs at ~10 POPS via mma.sync.
//
// GEMM view: M = N*OH*OW output pixels (rows), N_gemm = O output channels (columns),
// K = KH*KW*Cw words of 32 bits, word k = (tap k / Cw, channel word k % Cw); the zero-padded
// tail of the last k256 step adds nothing because both operands are 0 there.
//
// The mask terms of E12 and the epilogue: kernels/binary_conv_common.cuh.
//
// Why this shape (measured on an H200, see benchmarks/results): a binary GEMM with K = 576 bits
// (ResNet's 64-channel 3x3) is so thin that per-output work, not the tensor core, sets the pace;
// at 10 POPS the SM has ~3.6 thread instructions per output. So:
//   - the CTA's 64-channel weight slice (and a word -> (offset, tap) table) is staged in shared
//     memory once; B fragments come from it by ldmatrix.x4 (rows padded to 4 mod 8 words: no
//     bank conflicts);
//   - A fragments are loaded straight from global memory (L1-resident: neighbouring pixels and
//     taps overlap), predicated on the row's tap mask, one k256 step ahead of the MMAs;
//   - CTAs are persistent (kBlocksPerSm an SM), so staging is paid once per CTA;
//   - each lane works out the geometry of one row only (n, oh, ow, tap mask, r(p)) and the
//     lanes that need it get it by shuffle;
//   - the sign + re-pack epilogue compares against per-channel integer thresholds (sign of
//     scale·d + shift ⟺ d ≥ dmin xor flip, found on the host: engine/packed) — a multiply-add
//     and a compare per output instead of float math.
// Warp tile 32 rows x 64 channels (MT = 2, NT = 8), 4 warps per CTA = 128 rows.
//
// Fragment layout of mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32 (PTX ISA, "Matrix
// Fragments for mma.m16n8k256"): lane = 4 g + t;
//   A (16 x 256 bits, row): a0 = row g, bits [32t, 32t+32); a1 = row g+8, same bits;
//                           a2 = row g, bits [128+32t, ...); a3 = row g+8, bits [128+32t, ...)
//   B (256 x 8, col):       b0 = column g, bits [32t, 32t+32); b1 = column g, bits [128+32t, ...)
//   C/D (16 x 8 s32):       c0, c1 = row g, columns 2t, 2t+1; c2, c3 = row g+8, same columns.
// ldmatrix.x4 (b16 view) hands lane 4g+t the 32-bit word t of row g of each 8 x 16-byte matrix,
// which is exactly b0 (bytes 0..15 of a 32-byte k-step row) and b1 (bytes 16..31).
#include <algorithm>

#include "common/error.h"
#include "kernels/backend.h"
#include "kernels/binary_conv.h"
#include "kernels/binary_conv_common.cuh"
#include "kernels/cuda_common.h"
#include "kernels/ptx.cuh"

namespace mdq::kernels {
namespace binary {
namespace {

using ptx::ldmatrix_x4;
using ptx::mma_b1_and_popc;
using ptx::smem_u32;

constexpr int kWarps = 4, kThreads = kWarps * 32;
constexpr int kBlocksPerSm = 4;  // 128 registers a thread (ptxas, sm_90): 16 warps an SM, no spills
constexpr int kRowsPerWarp = 32, kRowsPerCta = kWarps * kRowsPerWarp;  // MT = 2
constexpr int kChunkWords = 256;  // k words of weights staged at a time (64 x 260 x 4 B = 66.5 KB)

// One activation word of a row (its pointer, tap mask) at table entry (offset, tap): 0 outside
// the image. In PTX so that the address stays one mad.wide.u32 on the row pointer (the compiler
// otherwise rebuilds a sign-extended 64-bit index for every load: 4 more instructions).
__device__ __forceinline__ uint32_t load_word(const uint32_t* row, uint32_t mask, int2 ot) {
  uint32_t v;
  asm volatile(
      "{\n .reg .pred p;\n .reg .u64 a;\n setp.ne.b32 p, %2, 0;\n mad.wide.u32 a, %3, 4, %1;\n mov.b32 %0, 0;\n"
      " @p ld.global.nc.u32 %0, [a];\n}\n"
      : "=r"(v)
      : "l"(row), "r"(mask & (1u << ot.y)), "r"(static_cast<unsigned>(ot.x)));
  return v;
}

// A fragments of k256 step s for this lane's rows q = 2 i + h (row 16 i + 8 h + g).
__device__ __forceinline__ void load_a(uint32_t (&dst)[2][4], const int2* table, int s, int tq,
                                       const uint32_t* const (&row)[4], const uint32_t (&mask)[4]) {
  const int2 t0 = table[8 * s + tq], t1 = table[8 * s + 4 + tq];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      dst[i][h] = load_word(row[2 * i + h], mask[2 * i + h], t0);
      dst[i][2 + h] = load_word(row[2 * i + h], mask[2 * i + h], t1);
    }
}

// The 16 MMAs of k256 step s: B fragments of the 8 n-tiles by 4 ldmatrix.x4.
__device__ __forceinline__ void mma_step(int32_t (&acc)[2][8][4], const uint32_t (&a)[2][4], const uint32_t* Bs,
                                         int ldb, int s, int ld_row, int ld_col) {
#pragma unroll
  for (int jj = 0; jj < 4; ++jj) {
    uint32_t b[4];  // b0, b1 of n-tile 2jj, then of n-tile 2jj+1
    ldmatrix_x4(b, smem_u32(Bs + (16 * jj + ld_row) * ldb + 8 * s + ld_col));
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      mma_b1_and_popc(acc[i][2 * jj], a[i], b[0], b[1]);
      mma_b1_and_popc(acc[i][2 * jj + 1], a[i], b[2], b[3]);
    }
  }
}

// Stages weight words [kc0, kc0 + kc) of the CTA's 64 channels, and their (offset, tap) table.
__device__ void stage_weights(const BinaryConvArgs& args, const Geometry& g, uint32_t* Bs, int2* table, int ldb,
                              int n0, int kc0, int kc) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int c = warp; c < kCols; c += kWarps) {
    const int o = n0 + slice_channel(c, args.mode);  // column c of the GEMM (binary_conv_common.cuh)
    for (int k = lane; k < kc; k += 32)
      Bs[c * ldb + k] = o < g.O && kc0 + k < g.Ktot ? __ldg(args.w + (long long)o * g.Ktot + kc0 + k) : 0u;
  }
  for (int k = threadIdx.x; k < kc; k += kThreads) table[k] = k_word_source(g, kc0 + k);
}

// Persistent: a CTA owns one 64-channel slice (blockIdx.y) and walks 128-row tiles
// blockIdx.x, blockIdx.x + gridDim.x, ...; with a single weight chunk (every ResNet layer) the
// slice and the thresholds are loaded once per CTA, not once per tile.
// KS = 3: the 3x3 kernel size known at compile time (tap loops unrolled); KS = 0: any size.
template <int KS>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm) binary_conv_kernel(BinaryConvArgs args, Geometry g) {
  extern __shared__ __align__(16) uint32_t smem[];
  const int chunk = min(g.Ktot + 7 & ~7, kChunkWords);  // words per staged chunk, whole k256 steps
  const int ldb = chunk + 4;                             // ≡ 4 (mod 8): conflict-free ldmatrix rows
  uint32_t* Bs = smem;                                   // [kCols][ldb]
  int2* table = reinterpret_cast<int2*>(Bs + kCols * ldb);  // [chunk]: (word offset, tap)
  const bool one_chunk = g.Ktot <= chunk;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int gq = lane >> 2, tq = lane & 3;
  const int n0 = blockIdx.y * kCols;
  // ldmatrix row address of this lane: matrix mi = lane / 8 -> n-tile of the pair (mi >> 1)
  // and k half (mi & 1); row = channel within the pair.
  const int ld_row = 8 * (lane >> 4) + (lane & 7), ld_col = 4 * ((lane >> 3) & 1);

  __shared__ EpilogueTables tables;
  load_epilogue_tables(tables, args, g, n0, threadIdx.x, blockDim.x);
  if (one_chunk) stage_weights(args, g, Bs, table, ldb, n0, 0, chunk);
  __syncthreads();  // thresholds (and the one chunk) are in
  const int tiles = (g.M + kRowsPerCta - 1) / kRowsPerCta;
  for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {  // uniform across the CTA
    const int mw = tile * kRowsPerCta + warp * kRowsPerWarp;     // first row of this warp

    // ---- this lane's own row mw + lane: base offset, tap mask, r = 2 popc(A&M) - popc(M)
    const Row my = row_geometry<KS>(args, g, mw + lane);
    const uint32_t* row[4];  // x + the row's base: only dereferenced at taps inside the image
    uint32_t mask[4];
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int src = 16 * (q >> 1) + 8 * (q & 1) + gq;
      row[q] = args.x + __shfl_sync(0xffffffffu, my.base, src);
      mask[q] = __shfl_sync(0xffffffffu, my.mask, src);
    }

    int32_t acc[2][8][4] = {};

    for (int kc0 = 0; kc0 < g.Ktot; kc0 += chunk) {
      const int kc = min(chunk, g.Ktot - kc0 + 7 & ~7);  // whole k256 steps in this chunk
      if (!one_chunk) {
        __syncthreads();  // the previous chunk is no longer read
        stage_weights(args, g, Bs, table, ldb, n0, kc0, kc);
        __syncthreads();
      }
      // Two fragment buffers in turn: step s + 1 loads while step s multiplies.
      const int steps = kc / 8;
      uint32_t a0[2][4], a1[2][4];
      load_a(a0, table, 0, tq, row, mask);
      for (int s = 0; s < steps; s += 2) {
        if (s + 1 < steps) load_a(a1, table, s + 1, tq, row, mask);
        mma_step(acc, a0, Bs, ldb, s, ld_row, ld_col);
        if (s + 1 < steps) {
          if (s + 2 < steps) load_a(a0, table, s + 2, tq, row, mask);
          mma_step(acc, a1, Bs, ldb, s + 1, ld_row, ld_col);
        }
      }
    }

    // ---- epilogue. Columns of this lane: o = n0 + 8 j + 2 tq + e.
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int local = 16 * i + 8 * h + gq;
        epilogue_row(acc[i], h, mw + local, __shfl_sync(0xffffffffu, my.r, local), mask[2 * i + h], tables, args, g,
                     n0, nullptr);
      }
  }
}

}  // namespace
}  // namespace binary

using namespace binary;

size_t binary_conv_smem_bytes(int k_words) {
  const int chunk = std::min((k_words + 7) & ~7, kChunkWords);
  return sizeof(uint32_t) * kCols * (chunk + 4) + sizeof(int2) * chunk;
}

bool binary_conv_reads_pixel_popc(const BinaryConvArgs& a) {
  return a.mode != BinaryEpilogue::ShortcutSignPack && !wgmma_applies(conv_shape(a));
}

bool binary_conv_fuses_shortcut(const BinaryConvArgs& a) { return fuses_shortcut(a, conv_shape(a)); }

void binary_conv2d(const BinaryConvArgs& a) {
  const Geometry g = make_geometry(a);
  if (g.M <= 0 || g.O <= 0) return;
  MDQ_CHECK(a.mode != BinaryEpilogue::ShortcutSignPack || fuses_shortcut(a, g),
            "binary_conv2d: ShortcutSignPack where the fused kernel does not run (binary_conv_fuses_shortcut)");
  if (conv2d_wgmma(a, g)) return;
  const size_t smem = binary_conv_smem_bytes(g.Ktot);
  const bool k3 = g.KH == 3 && g.KW == 3;
  auto kernel = k3 ? binary_conv_kernel<3> : binary_conv_kernel<0>;
  // Raise each kernel's dynamic shared memory limit as needed (static + dynamic above 48 KB needs
  // the opt-in, and the static part is ~14 KB).
  static size_t smem_set[2] = {0, 0};
  if (smem > smem_set[k3]) {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    smem_set[k3] = smem;
  }
  // kBlocksPerSm CTAs an SM (the register budget of __launch_bounds__), over the channel slices.
  const int sms = cuda::sm_count();
  const int slices = (g.O + kCols - 1) / kCols, tiles = (g.M + kRowsPerCta - 1) / kRowsPerCta;
  const int per_slice = std::max(1, std::min(tiles, (kBlocksPerSm * sms + slices - 1) / slices));
  const dim3 grid((unsigned)per_slice, (unsigned)slices);
  kernel<<<grid, kThreads, smem, cuda::stream()>>>(a, g);
  CUDA_CHECK_LAUNCH();
}

void register_binary_conv(CudaBackend& b) {
  b.binary_conv2d = binary_conv2d;
  b.binary_conv_reads_pixel_popc = binary_conv_reads_pixel_popc;
  b.binary_conv_fuses_shortcut = binary_conv_fuses_shortcut;
}

}  // namespace mdq::kernels

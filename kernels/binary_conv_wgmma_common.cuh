// What the two sm_90a W1A1 kernels share (kernels/binary_conv_wgmma.cu, every warp in one role;
// kernels/binary_conv_wgmma_ws.cu, warp-specialised): the wgmma tile's sizes, its shared-memory
// operand layout and the gather's copy.
//
// Operand layout (no swizzle, K-major): per k256 step, 2 x R/8 core matrices of 8 rows x 16 bytes
// (128 bits of K), R = 64 rows (A) or 80 columns (B); word kk (0..7) of row c of step s is at byte
//   s * 32 R + (kk / 4) * 16 R + (c / 8) * 128 + (c % 8) * 16 + (kk % 4) * 4,
// so core matrices adjacent in K are 16 R bytes apart (LBO) and adjacent in M/N 128 B (SBO).
#pragma once
#include <cstdint>

#include "kernels/binary_conv_common.cuh"

namespace mdq::kernels::binary::wgmma {

constexpr int kWarpgroup = 128, kRows = 64;           // threads of a warpgroup; m64 tiles
constexpr int kN = kCols + 16;                        // GEMM columns: 64 channels, the ones column, 15 zeros
constexpr int kAStep = 32 * kRows, kBStep = 32 * kN;  // bytes of one k256 step of A and of B

template <int R>  // rows of the operand: kRows (A) or kN (B)
__device__ __forceinline__ int operand_offset(int s, int c, int kk) {
  return s * 32 * R + (kk >> 2) * 16 * R + (c >> 3) * 128 + (c & 7) * 16 + (kk & 3) * 4;
}

// One copy of the gather, the same for every row: word offset from the row's base, the tap's
// mask bit, and the destination's byte offset in the tile (operand_offset without the row part).
struct alignas(16) Copy {
  int src, tap_bit, dst, pad;
};

}  // namespace mdq::kernels::binary::wgmma

// What the two sm_90a W1A1 kernels share (kernels/binary_conv_wgmma.cu, every warp in one role;
// kernels/binary_conv_wgmma_ws.cu, warp-specialised): the wgmma tile's sizes, its shared-memory
// operand layout and the gather's copy; on the host, a CTA's shared memory, the warpgroup switch
// and the instantiation a layer takes.
//
// Operand layout (no swizzle, K-major): per k256 step, 2 x R/8 core matrices of 8 rows x 16 bytes
// (128 bits of K), R = 64 rows (A) or 80 columns (B); word kk (0..7) of row c of step s is at byte
//   s * 32 R + (kk / 4) * 16 R + (c / 8) * 128 + (c % 8) * 16 + (kk % 4) * 4,
// so core matrices adjacent in K are 16 R bytes apart (LBO) and adjacent in M/N 128 B (SBO).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

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

// Dynamic shared memory of a CTA: `nbuf` activation tiles and the weights of `wgs` slices,
// `steps` k256 steps each, and the copy list.
inline size_t smem_bytes(int steps, int ktot, int nbuf, int wgs = 1) {
  return static_cast<size_t>(steps) * (wgs * kBStep + nbuf * kAStep) + sizeof(Copy) * ktot;
}

// MDQ_W1A1_WARPGROUPS=1 or 2 picks the CTA shape (for side-by-side timing); unset or else: auto (0).
inline int warpgroups_asked() {
  const char* e = std::getenv("MDQ_W1A1_WARPGROUPS");
  return e && (std::strcmp(e, "1") == 0 || std::strcmp(e, "2") == 0) ? e[0] - '0' : 0;
}

// Calls launch(KS, UW) with the instantiation a's layer takes, as std::integral_constant values,
// and returns what it returns: KS = 3 for 3x3 taps (unrolled in the row geometry), else 0 (any
// size); UW = words a gather copy, 4 where a 3x3 tap's words come in fours from 16-byte-aligned
// activations and weights, 2 where Cw is even (a copy never straddles two taps), else 1.
template <class Launch>
auto with_layer_shape(const BinaryConvArgs& a, const Geometry& g, Launch&& launch) {
  using K3 = std::integral_constant<int, 3>;
  using K0 = std::integral_constant<int, 0>;
  const bool k3 = g.KH == 3 && g.KW == 3, even = g.Cw % 2 == 0;
  const bool quad = g.Cw % 4 == 0 && reinterpret_cast<uintptr_t>(a.x) % 16 == 0 &&
                    reinterpret_cast<uintptr_t>(a.w) % 16 == 0;
  if (k3 && quad) return launch(K3{}, std::integral_constant<int, 4>{});
  if (k3 && even) return launch(K3{}, std::integral_constant<int, 2>{});
  if (k3) return launch(K3{}, std::integral_constant<int, 1>{});
  if (even) return launch(K0{}, std::integral_constant<int, 2>{});
  return launch(K0{}, std::integral_constant<int, 1>{});
}

}  // namespace mdq::kernels::binary::wgmma

// Launcher for the W1A1 convolution on the b1 tensor cores (kernels/binary_conv.cu): binary
// weights, binary activations, AND+popc with E12's validity mask. Device pointers; work is
// queued on mdq::cuda::stream(). CPU reference: engine/packed/packed_conv.cpp.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/conv_shape.h"

namespace mdq::kernels {

// What the epilogue does with the exact ±1 dot product d of output (pixel, channel o):
//   Int32      out i32 [N][OH][OW][O] = d
//   Int16      out i16 [N][OH][OW][O] = d, exact while |d| <= K = KH KW C <= 32767 (the caller
//              checks K): half the bytes of Int32's
//   Affine     out f32 [N][OH][OW][O] = scale[o] d + shift[o]             (folds BatchNorm)
//   AffineRelu out f32                = max(0, scale[o] d + shift[o])
//   SignPack   out u32 [N][OH][OW][ceil(O/32)], bit o = (d >= dmin[o]) xor flip[o], which is
//              (scale[o] d + shift[o] >= 0) with the thresholds of engine/packed's
//              sign_thresholds: the next binary layer's packed input; bits for o >= O are 0.
//   ResidualSignPack  out f32 = scale[o] d + shift[o] + residual (f32, same shape), and
//              out_bits u32 [N][OH][OW][ceil(O/32)] = its signs (y >= 0): the end of a
//              Bi-Real-style binary block with a real-valued skip (a strided shortcut conv's
//              f32 output), whose signs are the next binary layer's input. out may be null:
//              only the signs are written.
//   SkipSignPack  out u32 as SignPack, bit o = (scale[o] d + shift[o] + s >= 0) with the skip
//              s = +1 where bit o of skip_bits (u32, out's shape: the block's packed ±1 input)
//              is set, else -1: the end of a block with the identity skip, all in integers.
//              thresholds [4][O]: SignPack's (dmin, flip) for s = -1, then for s = +1.
//   ShortcutSignPack  out_bits as ResidualSignPack's, its residual worked out in the same kernel:
//              the block's 1x1 strided shortcut conv on the block's packed input, folded BN
//              (shortcut.scale d_s + shortcut.shift: the f32 value binary_conv2d's Affine gives,
//              so the bits equal ResidualSignPack's on that output). The f32 skip never goes to
//              memory. The sm_90a kernel only: binary_conv_fuses_shortcut says where it runs.
// scale / shift may be null (1 and 0).
enum class BinaryEpilogue { Int32, Int16, Affine, AffineRelu, SignPack, ResidualSignPack, SkipSignPack, ShortcutSignPack };

// ShortcutSignPack's shortcut: a 1x1 conv, stride `stride`, no padding, whose output has the
// main conv's shape.
struct BinaryShortcut {
  const uint32_t* x = nullptr;         // the block's packed input [N][H][W][ceil(C/32)]
  const uint32_t* w = nullptr;         // packed weights [O][ceil(C/32)]
  const int32_t* tap_popc = nullptr;   // [O][2]: popc of each filter's words (its one tap, the total)
  const float* scale = nullptr;        // may be null (1)
  const float* shift = nullptr;        // may be null (0)
  int H = 0, W = 0, C = 0, stride = 1;
};

struct BinaryConvArgs {
  const uint32_t* x = nullptr;          // packed NHWC activations [N][H][W][Cw], Cw = ceil(C/32)
  const uint32_t* w = nullptr;          // packed weights [O][KH][KW][Cw]
  const int32_t* pixel_popc = nullptr;  // [N][H][W]: popc of each input pixel's Cw words (see below)
  const int32_t* tap_popc = nullptr;    // [O][KH*KW + 1]: popc of each tap's weight words, then the total
  int N = 0, H = 0, W = 0, C = 0, O = 0, KH = 1, KW = 1, stride = 1, pad = 0;
  BinaryEpilogue mode = BinaryEpilogue::Int32;
  const float* scale = nullptr;
  const float* shift = nullptr;
  const int32_t* thresholds = nullptr;  // SignPack: [2][O] = dmin, then flip (0 or 1); SkipSignPack [4][O]
  const float* residual = nullptr;       // ResidualSignPack
  uint32_t* out_bits = nullptr;          // ResidualSignPack
  const uint32_t* skip_bits = nullptr;   // SkipSignPack
  BinaryShortcut shortcut;               // ShortcutSignPack
  void* out = nullptr;
};
// Limits the caller checks: KH*KW <= 31 taps; N*OH*OW and N*H*W*ceil(C/32) below 2^31.

void binary_conv2d(const BinaryConvArgs& a);
// Whether binary_conv2d runs ShortcutSignPack for a: the sm_90a kernel applies (see
// binary_conv_common.cuh's wgmma_applies), the shortcut's input has an even number of words a
// pixel, at most 8 (one k256 step: C <= 256), and its output has the main conv's shape.
bool binary_conv_fuses_shortcut(const BinaryConvArgs& a);
// Whether binary_conv2d(a) reads a.pixel_popc: the sm_90a kernel counts popc(A&M) on the tensor
// core and does not, so the caller computes the popcounts (a pass over the input) only when needed.
bool binary_conv_reads_pixel_popc(const BinaryConvArgs& a);
// Dynamic shared memory the kernel takes for a K of k_words 32-bit words per output channel.
size_t binary_conv_smem_bytes(int k_words);

}  // namespace mdq::kernels

// Convolutions and linear layers of the rounded network on packed weights (DESIGN.md E12):
// W1A1 (binary weights and activations, AND+popc on the b1 tensor cores) and W1A16 / W2A16
// (binary / ternary weights, bf16 activations). Activations are NHWC; dilation 1, groups 1.
// CPU versions are the references: W1A1 by E12's popc formula per tap, the float ones by
// plain loops (conv2d_nhwc_reference). CUDA versions: kernels/binary_conv.cu, w1a16_conv.cu.
#pragma once
#include <utility>

#include "engine/tensor.h"
#include "kernels/w1a16_conv.h"

namespace mdq::packed {

struct ConvGeometry {
  int64_t stride = 1;
  int64_t padding = 0;  // zero padding: contributes 0, not ±1 (E12's mask)
};

// Weights packed once at export (E11 rounding already applied).
struct PackedWeights {
  Tensor sign;      // u32 [O][KH][KW][Cw]: bit 1 = +1
  Tensor nonzero;   // ternary only, same shape: bit 1 = not 0; undefined for binary weights
  Tensor tap_popc;  // binary only, i32 [O][KH*KW + 1]: popc of each tap's words, then the total
  int64_t channels = 0;

  bool ternary() const { return nonzero.defined(); }
  int64_t out_channels() const { return sign.dim(0); }
  int64_t kernel_h() const { return sign.dim(1); }
  int64_t kernel_w() const { return sign.dim(2); }
  PackedWeights to(Device device) const;
};

// w f32 [O][C][KH][KW] (the engine's conv layout) or [O][C] (linear, packed as 1x1):
// binary packs sign(w) (w >= 0 -> +1); ternary expects values in {-1, 0, 1}.
PackedWeights pack_binary_weights(const Tensor& w);
PackedWeights pack_ternary_weights(const Tensor& w);

// What a W1A1 layer writes, from the exact ±1 dot product d of (pixel, o):
enum class BinaryOutputMode {
  Int32,       // i32 [..., O] = d (exact; for tests)
  Int16,       // i16 [..., O] = d, exact for K = KH·KW·C <= kInt16MaxK (larger K is refused)
  Affine,      // f32 [..., O] = scale[o] d + shift[o]  (scale/shift fold BatchNorm)
  AffineRelu,  // f32, then max(0, .)
  SignPack,    // u32 [..., ceil(O/32)]: bit o = (scale[o] d + shift[o] >= 0), the next layer's input
};
// The largest K = KH·KW·C of an Int16 output: |d| <= K must fit int16.
constexpr int64_t kInt16MaxK = 32767;
struct BinaryOutput {
  BinaryOutput() = default;
  BinaryOutput(BinaryOutputMode m, Tensor sc = {}, Tensor sh = {}, Tensor th = {})
      : mode(m), scale(std::move(sc)), shift(std::move(sh)), thresholds(std::move(th)) {}
  BinaryOutputMode mode = BinaryOutputMode::Int32;
  Tensor scale, shift;  // f32 [O], same device as the input; undefined = 1 and 0
  Tensor thresholds;    // SignPack: sign_thresholds(...) on the input's device; undefined = made per call
};

// SignPack's sign as integer thresholds, one pair per output channel: since d -> scale·d + shift
// (f32: the product rounded, then the sum) is monotone, (scale·d + shift >= 0) equals
// (d >= dmin) xor flip for every possible d (|d| <= KH·KW·C). i32 [2][O] = dmin, then flip,
// on `device`. Layers compute it once (a GPU call without it copies scale/shift to the host).
Tensor sign_thresholds(const PackedWeights& w, const Tensor& scale, const Tensor& shift, Device device);
// The same for (scale·d + shift + s >= 0), s = ±1 the identity skip of a binary block (the sum
// rounded to f32, then s added, as the residual output is): i32 [4][O] = dmin and flip for
// s = -1, then for s = +1.
Tensor skip_sign_thresholds(const PackedWeights& w, const Tensor& scale, const Tensor& shift, Device device);

// x_bits u32 [N][H][W][Cw] (packed NHWC) -> [N][OH][OW][O or ceil(O/32)] per out.mode.
Tensor binary_conv2d(const Tensor& x_bits, const PackedWeights& w, ConvGeometry g, const BinaryOutput& out = {});
// The end of a Bi-Real-style binary block in one pass: y = scale[o] d + shift[o] + residual
// (f32 [N][OH][OW][O]), and bits = its signs packed (y >= 0), the next binary layer's input.
// with_sum = false: y is not written (undefined), the signs only.
struct ResidualOutput {
  Tensor y, bits;
};
ResidualOutput binary_conv2d_residual(const Tensor& x_bits, const PackedWeights& w, ConvGeometry g, const Tensor& scale,
                                      const Tensor& shift, const Tensor& residual, bool with_sum = true);
// The end of a block whose skip is its own ±1 input, as packed bits skip_bits u32
// [N][OH][OW][ceil(O/32)]: bits of (scale[o] d + shift[o] + s >= 0), s = +1 where skip_bits has
// bit o set, else -1 -- binary_conv2d_residual(..., unpack_signs(skip_bits)).bits, bit for bit,
// without the f32 skip or sum ever in memory: the epilogue compares d with skip_sign_thresholds
// (undefined: made per call).
Tensor binary_conv2d_skip_signs(const Tensor& x_bits, const PackedWeights& w, ConvGeometry g, const Tensor& scale,
                                const Tensor& shift, const Tensor& skip_bits, const Tensor& thresholds = {});
// The end of a block whose skip is a shortcut conv-BN on the block's input x_bits (a
// downsampling block): binary_conv2d_residual(h_bits, w, g, scale, shift, binary_conv2d(x_bits,
// shortcut.w, shortcut.g, {Affine, shortcut.scale, shortcut.shift}), false).bits, bit for bit.
// On the GPU where kernels/binary_conv.h's ShortcutSignPack takes it (sm_90a; a 1x1 unpadded
// shortcut on an even number of words a pixel, at most 8), one kernel does it all and the f32
// skip never goes to memory; else those two calls. *fused (when given) says which ran.
struct Shortcut {
  const PackedWeights& w;  // binary
  ConvGeometry g;
  const Tensor& scale;     // f32 [O] or undefined
  const Tensor& shift;
};
Tensor binary_conv2d_shortcut_signs(const Tensor& h_bits, const PackedWeights& w, ConvGeometry g, const Tensor& scale,
                                    const Tensor& shift, const Tensor& x_bits, const Shortcut& shortcut,
                                    bool* fused = nullptr);
// x_bits u32 [N][Cw] -> [N][O or ceil(O/32)]; w packed from [O][C].
Tensor binary_linear(const Tensor& x_bits, const PackedWeights& w, const BinaryOutput& out = {});

struct FloatOutput {
  Tensor scale, shift;  // f32 [O] or undefined (1 and 0)
  bool relu = false;
  DType dtype = DType::F32;  // F32 or BF16
};
// x bf16 [N][H][W][C] (NHWC) -> [N][OH][OW][O]; binary (W1A16) or ternary (W2A16) weights.
Tensor w1a16_conv2d(const Tensor& x, const PackedWeights& w, ConvGeometry g = {}, const FloatOutput& out = {});
// x bf16 [N][C] -> [N][O].
Tensor w1a16_linear(const Tensor& x, const PackedWeights& w, const FloatOutput& out = {});

// The GPU side of w1a16_conv2d, for kernels outside the backend table (the workshop's, dev/):
// its argument checks (op names the caller in their messages; x must be on the GPU), the output
// tensor, and the kernel arguments that write it.
struct W1A16Launch {
  Tensor y;
  kernels::W1A16ConvArgs args;
};
W1A16Launch w1a16_conv2d_launch(const char* op, const Tensor& x, const PackedWeights& w, ConvGeometry g = {},
                                const FloatOutput& out = {});

// Plain-loop float convolution, the reference for all of the above: x f32 [N][H][W][C],
// w f32 [O][KH][KW][C] -> f32 [N][OH][OW][O], accumulated in double. CPU tensors only.
Tensor conv2d_nhwc_reference(const Tensor& x, const Tensor& w, ConvGeometry g);
// The unpacked weights as f32 [O][KH][KW][C]: ±1 (binary) or {-1, 0, 1} (ternary).
Tensor unpack_weights(const PackedWeights& w);

}  // namespace mdq::packed

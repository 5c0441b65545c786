// One inference lowering of a rounded network (docs/DESIGN.md E11, E12): lower() walks the model
// once and picks, per layer, where it runs, from the kind of its input and the levels of its
// weights:
//   W1A1   the input is ±1 (after a sign activation) and the weights are ±1: the layer reads
//          packed bits (packed::binary_conv2d, AND + popc, integer-exact) and, when a sign
//          follows, writes the next layer's bits itself with integer thresholds taken from the
//          float engine's own BatchNorm (SignPack); a residual block of such layers ends in one
//          pass that writes the signs of the sum (packed::binary_conv2d_skip_signs on the ±1
//          input's own bits, or binary_conv2d_shortcut_signs with a shortcut conv, in the same
//          kernel where it can). A linear layer with nothing after it writes d + bias.
//   W1A16  the input is real-valued and the weights are ±1 or {-1, 0, 1}: packed::w1a16_conv2d /
//          w1a16_linear on NHWC activations with the BatchNorm after it and the layer's bias
//          folded into the kernel's per-channel scale/shift and a ReLU fused.
//   float  anything else: the float engine's own ops on NCHW f32 (a grouped or non-square
//          convolution, weights that are not ±1 or {-1, 0, 1}, more taps than W1A1 takes, a
//          ReLU6, a BatchNorm or an activation that no layer before it absorbed). A layer on
//          real input whose output goes into a sign runs here too: the sign must be decided on
//          the float engine's value, which W1A16's rounding could flip where it is near 0.
//   With LowerOptions::stem Direct, TensorCores or Bf16 the first of these, when it is the
//          convolution that reads the images, runs instead as one Bf16Stem step into NHWC, or
//          into bits when a sign follows and the direct kernel takes it (see the option).
// Between layers the plan converts activations as needed (exactly, but for bf16 rounding).
//
// W1A16 activations (PackedPrecision): BF16 keeps them in bf16 (8 significant bits; the fastest,
// but the rounding flips the top-1 class of ~0.3-0.9% of images); SplitBF16 (the default) keeps
// them in f32 and feeds each W1A16 layer a = hi + lo as twice the channels, hi = bf16(a), lo =
// bf16(a - hi) (~16 bits), against its weights packed twice along the input channels ([O][2C]):
// the unchanged bf16 kernels then compute sum w (hi + lo) in f32, within ~1e-5 of the float
// engine's logits, for twice the K work per layer.
//
// Agreement with the float engine (the rounded network as mdq-train evaluates it): float layers
// are the same ops on the same values; W1A1 layers are exact and sign as the float engine does
// (sign(0) = +1; only a NaN differs, which bits cannot hold); a W1A1 residual sum folds its
// BatchNorm (scale d + shift + skip vs (d - mean) invstd + skip: a few ulps, which can flip a
// sign only where |y| < ~1e-6); W1A16 layers are within their precision's rounding.
//
// Covered: Sequential, Conv2d, Linear, BatchNorm2d, ReLU, ReLU6, SignSTE, MaxPool2d,
// GlobalAvgPool, Flatten and nn::Residual: every model of the zoo. Runs on CUDA (the point) or on
// the CPU (the packed ops' reference loops; slow, for tests). It lives in the engine (not
// apps/common) so GPU tests, which link libmdq only, can reach it.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/nn/module.h"
#include "engine/packed/stem_conv.h"

namespace mdq::infer {

enum class PackedPrecision { BF16, SplitBF16 };
const char* packed_precision_name(PackedPrecision p);             // "bf16" | "split"
PackedPrecision parse_packed_precision(const std::string& name);  // "bf16" | "split", else throws

// Where the convolution that reads the images runs (LowerOptions::stem, below).
enum class StemPath { Float, Direct, TensorCores, TensorCoresBf16, Bf16 };

struct LowerOptions {
  Device device = Device::CPU;                             // where the plan's weights and activations live
  PackedPrecision precision = PackedPrecision::SplitBF16;  // of the W1A16 layers' activations
  // The stem (the convolution that reads the images; not packed) runs
  //   Float (the default here): on the float engine in f32 NCHW, as mdq-train evaluates it;
  //   Direct: as one Bf16Stem step where the direct kernel takes it (packed::stem_conv_fits: <= 4
  //     channels, 16/32/64 filters, windows up to 7x7, stride 1 or 2) and MDQ_STEM_DIRECT is not
  //     0, else as Float. The kernel reads the f32 images and sums in f32 (packed::stem_conv_nhwc),
  //     so the sums differ from the float engine's only in their order (a sign taken of them may
  //     flip at a near-tie) and BF16 precision rounds the output;
  //   TensorCores (mdq-infer's default): as Direct, with the direct kernel's sums on tensor cores
  //     from images and weights split into two bf16 parts each, three MMAs a product
  //     (packed::StemArithmetic::SplitBf16TensorCores: each product within 3.02 * 2^-16 of the f32
  //     one), on a CUDA device of compute capability >= 8.0; elsewhere (the CPU, older GPUs)
  //     exactly Direct;
  //   TensorCoresBf16: as TensorCores with bf16-rounded images and weights, one MMA a product
  //     (StemArithmetic::Bf16TensorCores): the fastest, but the rounding (up to 2^-8 relative per
  //     product) flips signs at near-ties: 86735 of the 205520896 stem sign bits (0.04%) of
  //     ImageNet ResNet-18 at batch 256 differed from Direct's, and a W1A1 network carries a
  //     flipped bit on (its top-1 agreement with the float engine fell to 55-76% on weakly
  //     trained CIFAR-10 ResNet-18s, scripts/check-packed-infer.sh);
  //   Bf16: as one Bf16Stem step always: the direct kernel, or where it does not take the layer
  //     (or MDQ_STEM_DIRECT=0) three passes: the images rounded to bf16 NHWC, cuDNN's bf16
  //     convolution, the folded affine in a pass of its own.
  // The step folds the BatchNorm (and bias) and applies the ReLU after it, handing on Dense NHWC
  // (the max pool then runs on it or on its sign bits): no NCHW f32 activations between the
  // images and the first packed layer. The three-pass stem took 44% of ImageNet ResNet-18's W1A1
  // pass at batch 256 on an H200. When a sign follows and the direct kernel takes the stem with
  // 32 or 64 filters (packed::stem_signs_fit), the step packs the signs of its f32 values itself
  // and hands on Bits (Bf16Stem::signs): the stem's map (822 MB in f32 for ImageNet ResNet-18 at
  // batch 256) is never written nor read back. That fusion is decided at lower() time by
  // MDQ_STEM_DIRECT (0: the stem and Binarize as two steps).
  StemPath stem = StemPath::Float;
};

// The arithmetic of a Bf16Stem's direct step under `path`: SplitBf16TensorCores for TensorCores,
// Bf16TensorCores for TensorCoresBf16, F32 otherwise (Direct, and the paths that take no direct step).
packed::StemArithmetic stem_arithmetic(StemPath path);

// What runs where: the conv and linear layers of a plan per path.
struct Census {
  int64_t w1a1_convs = 0, w1a1_linears = 0, w1a1_blocks = 0;  // blocks: residual blocks fused into W1A1
  int64_t w1a16[2][2] = {{0, 0}, {0, 0}};                     // [conv, linear][binary, ternary]
  int64_t float_convs = 0, float_linears = 0;
  int64_t stem_signs = 0;  // of the float convs: a stem that packs the sign after it itself (Bf16Stem::signs)
  int64_t stem_direct = 0;  // of the float convs: a stem on the direct kernel (Bf16Stem::direct)
  int64_t stem_tensor_cores = 0;  // of those: its sums on tensor cores (Bf16Stem::on_tensor_cores)
  int64_t bytes = 0;  // of the tensors the plan holds: weights (packed or f32), folded BN, thresholds
  int64_t w1a16_layers() const { return w1a16[0][0] + w1a16[0][1] + w1a16[1][0] + w1a16[1][1]; }
  int64_t packed() const { return w1a1_convs + w1a1_linears + w1a16_layers(); }
  // e.g. "W1A1: 19 convs (8 residual blocks); W1A16: 1 binary linear; float: 1 conv", the float
  // convs followed by "(1 writes its signs)" where a stem does.
  std::string text() const;
};

class Step;  // one step of a plan (engine/infer/steps.h)

class Plan {
 public:
  Plan(LowerOptions options, std::vector<std::unique_ptr<Step>> steps);
  ~Plan();
  // images f32 NCHW [N][C][H][W] on the plan's device -> logits f32 [N][classes] there.
  Tensor logits(const Tensor& images) const;
  Census census() const;
  std::string summary() const { return census().text(); }
  const LowerOptions& options() const { return options_; }
  // The steps in order (engine/infer/steps.h), for tools that time or inspect them one by one.
  const std::vector<std::unique_ptr<Step>>& steps() const { return steps_; }

 private:
  LowerOptions options_;
  std::vector<std::unique_ptr<Step>> steps_;
};

// Packs the model's rounded layers onto options.device (the model's tensors are copied: the plan
// does not refer to the model afterwards). Returns null and sets *why_not to a one-line reason
// naming the layer when the network has a layer the lowering does not know, or when no conv or
// linear layer would run packed (then the float engine is the engine to use).
std::unique_ptr<Plan> lower(nn::Module& model, const LowerOptions& options, std::string* why_not);

}  // namespace mdq::infer

// The steps of an inference plan (engine/infer/lower.h): one small class per thing a step does,
// each reading and writing activations in one of three forms. lower.cpp decides which steps a
// model becomes; this file only runs them.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "engine/infer/lower.h"
#include "engine/ops/conv2d.h"
#include "engine/packed/packed_conv.h"
#include "engine/packed/stem_conv.h"

namespace mdq::infer {

// Where the activations are between two steps.
enum class Form {
  Float,  // f32 NCHW [N][C][H][W] or [N][F]: the float engine's ops (the images arrive so)
  Dense,  // NHWC [N][H][W][C] or [N][C], bf16 (PackedPrecision::BF16) or f32: the W1A16 kernels'
  Bits,   // u32 NHWC [N][H][W][ceil(C/32)], packed ±1 (bit 1 = +1): the W1A1 kernels'
};

struct Activation {
  Tensor x;
  int64_t channels = 0;  // while x holds bits: how many of the bits are channels
  bool vector = false;   // while x holds bits: they are [N][C] values packed as [N][1][1][Cw], not a map
};

class Step {
 public:
  virtual ~Step() = default;
  virtual void run(Activation& a) const = 0;
  virtual void count(Census&) const {}
};
using Steps = std::vector<std::unique_ptr<Step>>;
void run_all(const Steps& steps, Activation& a);
void count_all(const Steps& steps, Census& c);
int64_t bytes(const Tensor& t);                 // 0 when undefined
int64_t bytes(const packed::PackedWeights& w);  // sign bits, nonzero bits, tap popcounts

// ---- between forms

// A layout change, exact but for f32 -> bf16 rounding into Dense in BF16 precision: Float <->
// Dense, Bits -> Float (±1 NCHW), Bits -> Dense (±1 NHWC).
struct Relayout final : Step {
  Relayout(Form from_, Form to_, DType dense_) : from(from_), to(to_), dense(dense_) {}
  void run(Activation& a) const override;
  Form from, to;
  DType dense;  // Dense's element type
};

// A step that runs on the form it was lowered for.
struct InForm : Step {
  explicit InForm(Form form_) : form(form_) {}
  Form form;
};

// The sign activation of real values (Float or Dense), as packed bits.
struct Binarize final : InForm {
  using InForm::InForm;
  void run(Activation& a) const override;
};

// ---- the float engine's ops on Float activations, on the plan's copies of the layer's tensors

struct FloatConv final : Step {
  void run(Activation& a) const override;
  void count(Census& c) const override;
  Tensor weight, bias;  // bias may be undefined
  ops::Conv2dParams params;
};

// The stem (LowerOptions::stem Direct, TensorCores or Bf16): Float images -> Dense (or Bits,
// below). Where the direct kernel takes the layer (packed::stem_conv_fits on direct_weight) and
// MDQ_STEM_DIRECT is not 0, one pass: packed::stem_conv_nhwc reads the f32 NCHW images and writes
// act(scale conv + shift) NHWC in the Dense type, the sums in f32 (rounded once, to bf16, in BF16
// precision; not at all in SplitBF16). With a tensor-core `arithmetic` those sums are taken on
// tensor cores from bf16 operands (split in two parts or rounded) where the device has them
// (on_tensor_cores: a CUDA device of compute capability >= 8.0), else exactly as F32. Otherwise three
// passes: the images as NHWC bf16 with their channels zero-padded to the weights' (a multiple of 8,
// in the same pass), the float engine's convolution on them (ops::conv2d_forward's NHWC bf16 path:
// cuDNN's bf16 tensor cores), then the layer's bias and the BatchNorm after it as one folded affine
// pass with the ReLU (packed::affine_nhwc), in bf16; widened to f32 when the plan's Dense
// activations are f32 (SplitBF16). Counted as a float conv: its weights are the float engine's,
// unpacked (both copies are counted: the plan holds both).
// With `signs` (lower.cpp sets it where a sign activation follows and the direct kernel takes
// the layer with whole words of filters, packed::stem_signs_fit) the step is that sign too and
// hands on Bits: the one-pass kernel (either arithmetic) packs the signs of its f32 values in
// the same pass (packed::stem_conv_signs), never writing them; with MDQ_STEM_DIRECT=0 the three
// passes' bf16 output is packed as Binarize would (the same bits the two unfused steps give).
struct Bf16Stem final : Step {
  void run(Activation& a) const override;
  void count(Census& c) const override;
  bool direct() const;           // whether run takes the direct kernel
  bool on_tensor_cores() const;  // whether it takes it on tensor cores (direct(), arithmetic, a device with them)
  Tensor weight;        // f32 [O][C'][KH][KW]: the float engine's layer's, input channels zero-padded to C' = 8k
  Tensor direct_weight;  // f32 [O][C][KH][KW], the layer's own, when the direct kernel takes it; else undefined
  Tensor scale, shift;   // folded BN + bias, f32 [O] (either may be undefined: 1, 0)
  ops::Conv2dParams params;
  bool relu = false;
  DType dense = DType::BF16;  // the Dense activations' type the plan hands on
  bool signs = false;         // the sign after it too: hands on Bits [N][OH][OW][O/32], not Dense
  // The direct kernel's sums: F32, or on tensor cores (StemPath::TensorCores, TensorCoresBf16).
  packed::StemArithmetic arithmetic = packed::StemArithmetic::F32;
};

struct FloatLinear final : Step {  // flattens a 4-d input (NCHW order, as nn::Flatten)
  void run(Activation& a) const override;
  void count(Census& c) const override;
  Tensor weight, bias;
};

struct FloatBatchNorm final : Step {  // eval mode: the running statistics, read only
  void run(Activation& a) const override;
  void count(Census& c) const override;
  Tensor weight, bias, mean, var;  // weight and bias undefined without affine parameters
  float eps = 1e-5f;
};

// ---- shape and activation layers in the form they find (ReLU6 on Float only; Bits: max pool)

struct Relu final : InForm {
  Relu(Form form_, bool six_) : InForm(form_), six(six_) {}
  void run(Activation& a) const override;
  bool six;  // ReLU6
};

struct MaxPool final : InForm {
  MaxPool(Form form_, int64_t k, int64_t s, int64_t p) : InForm(form_), kernel(k), stride(s), padding(p) {}
  void run(Activation& a) const override;  // Bits: the OR of the window's bits (max of ±1)
  int64_t kernel, stride, padding;
};

// Float or Dense in, the same form out; Bits in, Float [N][C] out (packed::global_avg_pool_bits:
// no f32 map unpacked first).
struct GlobalAvgPool final : InForm {
  using InForm::InForm;
  void run(Activation& a) const override;
};

struct Flatten final : InForm {  // -> [N][C·H·W] in NCHW order, the float engine's
  using InForm::InForm;
  void run(Activation& a) const override;
};

// ---- packed layers

// W1A16 conv or linear: Dense -> Dense. In split precision (f32 input) the input is split into
// bf16 [hi | lo] channels for weights packed with doubled input channels.
struct W1A16Layer final : Step {
  void run(Activation& a) const override;
  void count(Census& c) const override;
  bool linear = false;  // a linear layer flattens a 4-d input (NCHW order) first
  packed::PackedWeights w;
  packed::ConvGeometry g;
  packed::FloatOutput out;  // folded BN + bias, ReLU, output type
};

// W1A1 conv or linear: Bits -> Bits (SignPack), or f32 (Affine: NHWC for a conv, [N][O] Float
// for a linear). A linear layer reads the whole (flattened) map as one window of H·W taps.
struct W1A1Layer final : Step {
  void run(Activation& a) const override;
  void count(Census& c) const override;
  std::string name;  // for messages
  bool linear = false;
  packed::PackedWeights w;
  packed::ConvGeometry g;
  packed::BinaryOutput out;
};

// ---- residual blocks

// body(x) + shortcut(x) (shortcut empty: x), then ReLU when relu; both branches end in `form`
// (Float or Dense), converted there by their last steps.
struct ResidualSum final : Step {
  void run(Activation& a) const override;
  void count(Census& c) const override;
  Steps body, shortcut;
  Form form = Form::Float;
  bool relu = false;
};

// A Bi-Real-style binary block on Bits: first = conv-BN-sign (SignPack), then second = conv-BN
// (its folded BN in second.out) whose output plus the skip is signed and packed in the same
// pass. The skip is the shortcut's conv-BN on the block's input (packed::binary_conv2d_shortcut_signs:
// in the same kernel on Hopper, else as an f32 Affine map), or, with no shortcut, the block's ±1
// input read as the bits it already is (packed::binary_conv2d_skip_signs: integer thresholds per
// skip sign, skip_thresholds).
struct BinaryBlock final : Step {
  void run(Activation& a) const override;
  void count(Census& c) const override;
  W1A1Layer first, second;
  std::unique_ptr<W1A1Layer> shortcut;  // null: the identity
  Tensor skip_thresholds;               // identity: packed::skip_sign_thresholds of second's BN
};

}  // namespace mdq::infer

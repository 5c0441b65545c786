// The inference lowering (engine/infer/lower.h): one walk over the module tree that turns each
// layer into steps (engine/infer/steps.h), tracking the form of the activations between them and
// inserting a conversion wherever the next step wants another.
#include <algorithm>

#include "engine/infer/fold.h"
#include "engine/infer/lower.h"
#include "engine/infer/steps.h"
#include "engine/nn/activation.h"
#include "engine/nn/conv2d.h"
#include "engine/nn/linear.h"
#include "engine/nn/pooling.h"
#include "engine/nn/reshape.h"
#include "engine/nn/residual.h"
#include "engine/packed/bitpack.h"
#include "engine/packed/stem_conv.h"

namespace mdq::infer {
namespace {

// A layer of the walked tree, with its dotted name for messages ("1.0.body.3").
struct Item {
  std::string name;
  nn::Module* m;
};

// The layers of nested Sequentials in forward order; residual blocks stay whole.
void collect(const std::string& prefix, nn::Module& m, std::vector<Item>& out) {
  if (dynamic_cast<nn::Sequential*>(&m)) {
    for (const auto& [name, child] : m.children()) collect(prefix + name + ".", *child, out);
  } else {
    out.push_back({prefix.empty() ? prefix : prefix.substr(0, prefix.size() - 1), &m});
  }
}

template <class T>
T* at(const std::vector<Item>& items, size_t i) {
  return i < items.size() ? dynamic_cast<T*>(items[i].m) : nullptr;
}

Tensor value(const Var& v) { return v.defined() ? v.value() : Tensor(); }
Tensor on(const Var& v, Device d) { return v.defined() ? v.value().to(d) : Tensor(); }

// w [O][C] or [O][C][KH][KW] -> [O][2C](...): the weights concatenated with themselves along the
// input channels, so that a layer fed split-bf16 input [hi | lo] (packed::split_bf16) computes
// sum w hi + sum w lo. For a linear layer after a Flatten, C is the flattened length C·H·W in
// NCHW order, which the split of the [N][C·H·W] activations keeps.
Tensor doubled_input_channels(const Tensor& w) {
  const int64_t O = w.dim(0), C = w.dim(1), T = w.numel() / (O * C);
  Shape s = w.shape();
  s[1] = 2 * C;
  Tensor d = Tensor::empty(s);
  const float* src = w.data<float>();
  float* dst = d.data<float>();
  for (int64_t o = 0; o < O; ++o)
    for (int half = 0; half < 2; ++half)
      std::copy(src + o * C * T, src + (o + 1) * C * T, dst + (o * 2 + half) * C * T);
  return d;
}

// w [O][C][KH][KW] -> [O][channels][KH][KW], the input channels past C zero: the weights of a
// convolution fed input whose channels are zero-padded the same way (Bf16Stem), which computes
// the same sums.
Tensor zero_padded_input_channels(const Tensor& w, int64_t channels) {
  const int64_t O = w.dim(0), C = w.dim(1), T = w.dim(2) * w.dim(3);
  Tensor d = Tensor::zeros({O, channels, w.dim(2), w.dim(3)});
  const float* src = w.data<float>();
  float* dst = d.data<float>();
  for (int64_t o = 0; o < O; ++o) std::copy(src + o * C * T, src + (o + 1) * C * T, dst + o * channels * T);
  return d;
}

// Whether the W1A1 kernel takes a layer of ±1 input: binary weights (2 levels), groups 1, 1..31
// taps.
bool w1a1_fits(int levels, int64_t groups, int64_t taps) {
  return levels == 2 && groups == 1 && taps >= 1 && taps <= 31;
}

// Whether the W1A16 kernel takes a layer of real input: binary or ternary weights, groups 1,
// square kernels, and at least 16 input channels. A layer with fewer (the 3-channel stem) gives
// the tensor-core MMA too little depth per tap: ImageNet ResNet-18's 7x7 stem took 9.5 ms of the
// W1A16 pass's 14.8 at batch 256 on an H200 (64%), so it runs on the float engine's convolution.
bool w1a16_fits(int levels, int64_t groups, int64_t in_channels, bool square) {
  return (levels == 2 || levels == 3) && groups == 1 && in_channels >= 16 && square;
}

bool w1a1_fits(const nn::Conv2d* c) {
  if (!c) return false;
  const Tensor& w = c->weight().value();
  return w1a1_fits(packed::level_set(w.cpu()), c->params().groups, w.dim(2) * w.dim(3));
}

// The form of the activations at a point of the walk.
struct State {
  Form form = Form::Float;
  bool flat = false;     // Bits flattened for the Linear that follows (it reads the map whole)
  int64_t channels = 0;  // of the activations, when known (0: not yet)
};

class Builder {
 public:
  explicit Builder(const LowerOptions& o)
      : device_(o.device), split_(o.precision == PackedPrecision::SplitBF16),
        dense_(split_ ? DType::F32 : DType::BF16), stem_(o.stem) {}

  std::string why;  // set when a step returns false

  // Lowers items in order from st, appending to out.
  bool layers(const std::vector<Item>& items, State& st, Steps& out) {
    // A BN that applies its ReLU itself (BatchNorm2d::fuse_relu) lowers as a plain BN: the ReLU
    // module kept after it (nn::ReLUFusedIntoBatchNorm) is what lowers to the ReLU.
    for (size_t i = 0; i < items.size(); ++i) {
      auto* bn = dynamic_cast<nn::BatchNorm2d*>(items[i].m);
      if (bn && bn->relu_fused() && !at<nn::ReLU>(items, i + 1)) {
        why = items[i].name + " applies a ReLU (fuse_relu) but no ReLU module follows it";
        return false;
      }
    }
    for (size_t i = 0; i < items.size(); ++i) {
      nn::Module* m = items[i].m;
      bool ok;
      if (dynamic_cast<nn::Conv2d*>(m) || dynamic_cast<nn::Linear*>(m)) ok = conv_or_linear(items, i, st, out);
      else if (auto* r = dynamic_cast<nn::Residual*>(m)) ok = residual(items[i].name, *r, st, out);
      else ok = other(items, i, st, out);
      if (!ok) return false;
      reads_images_ = false;
    }
    return true;
  }

  // Converts the activations to form f (a flattened bit map is unpacked and flattened).
  void to(Form f, State& st, Steps& out) const {
    if (st.form == f) return;
    out.push_back(std::make_unique<Relayout>(st.form, f, dense_));
    if (st.flat) out.push_back(std::make_unique<Flatten>(f));
    st.form = f;
    st.flat = false;
  }

 private:
  // A W1A1 conv (or a linear as a conv over its whole map, w [O][C][taps][1]) with the
  // epilogue that follows: the sign of BN(d + bias) as thresholds, else BN(d + bias) folded.
  W1A1Layer w1a1(const std::string& name, bool linear, const Tensor& w, packed::ConvGeometry g, const Var& bias,
                 nn::BatchNorm2d* bn, bool sign) const {
    W1A1Layer l;
    l.name = name;
    l.linear = linear;
    l.w = packed::pack_binary_weights(w.cpu()).to(device_);
    l.g = g;
    if (sign) {
      l.out = {packed::BinaryOutputMode::SignPack, Tensor(), Tensor(),
               sign_thresholds_of(l.w, value(bias), bn, device_)};
    } else {
      const FoldedAffine f = fold_batchnorm(value(bias), bn, l.w.out_channels());
      l.out = {packed::BinaryOutputMode::Affine, f.scale.defined() ? f.scale.to(device_) : Tensor(),
               f.shift.defined() ? f.shift.to(device_) : Tensor()};
    }
    return l;
  }

  bool conv_or_linear(const std::vector<Item>& items, size_t& i, State& st, Steps& out) {
    const Item& it = items[i];
    auto* conv = dynamic_cast<nn::Conv2d*>(it.m);
    auto* lin = dynamic_cast<nn::Linear*>(it.m);
    const Var weight = conv ? conv->weight() : lin->weight(), bias = conv ? conv->bias() : lin->bias();
    const Tensor w = weight.value().cpu();
    const int64_t O = w.dim(0), groups = conv ? conv->params().groups : 1;
    const packed::ConvGeometry g = conv ? packed::ConvGeometry{conv->params().stride, conv->params().padding}
                                        : packed::ConvGeometry{};
    auto* bn = at<nn::BatchNorm2d>(items, i + 1);
    const size_t act = i + 1 + (bn != nullptr);  // the activation after [BN], if any
    const bool sign = at<nn::SignSTE>(items, act) != nullptr, relu = at<nn::ReLU>(items, act) != nullptr;
    const int levels = packed::level_set(w);
    // A linear layer on bits reads the map [H][W][C] as one window of H·W taps.
    const int64_t taps = conv ? w.dim(2) * w.dim(3)
                              : (st.channels > 0 && w.dim(1) % st.channels == 0 ? w.dim(1) / st.channels : 0);

    if (st.form == Form::Bits && w1a1_fits(levels, groups, taps) && (conv ? sign && !st.flat : sign || !bn)) {
      const Tensor w4 = conv ? w : w.reshape({O, st.channels, taps, 1});
      out.push_back(std::make_unique<W1A1Layer>(w1a1(it.name, !conv, w4, g, bias, bn, sign)));
      if (sign) i = act;  // conv [BN] sign: one step; else a linear's d + bias, as f32 [N][O]
      st = {sign ? Form::Bits : Form::Float, false, O};
      return true;
    }
    if (st.form != Form::Bits && !sign && w1a16_fits(levels, groups, w.dim(1), !conv || w.dim(2) == w.dim(3))) {
      to(Form::Dense, st, out);
      auto l = std::make_unique<W1A16Layer>();
      l->linear = !conv;
      const Tensor host = split_ ? doubled_input_channels(w) : w;
      l->w = (levels == 2 ? packed::pack_binary_weights(host) : packed::pack_ternary_weights(host)).to(device_);
      l->g = g;
      const FoldedAffine f = fold_batchnorm(value(bias), bn, O);
      l->out = {bn ? f.scale.to(device_) : Tensor(), f.shift.defined() ? f.shift.to(device_) : Tensor(), relu, dense_};
      out.push_back(std::move(l));
      i = relu ? act : act - 1;  // conv [BN] [ReLU]: one step
      st.channels = O;
      return true;
    }
    if (conv && reads_images_ && groups == 1 && takes_stem(w, conv->params())) {
      // conv [BN] sign as one step that writes the bits (Bf16Stem::signs) where the direct kernel
      // takes it; lowered with MDQ_STEM_DIRECT=0, the two steps as before (the A/B of the fusion).
      const bool signs = sign && packed::stem_direct_enabled() && packed::stem_signs_fit(w, conv->params());
      auto stem = bf16_stem(*conv, bias, bn, relu);
      stem->signs = signs;
      out.push_back(std::move(stem));
      i = relu || signs ? act : act - 1;  // conv [BN] [ReLU | sign]: one step
      st = {signs ? Form::Bits : Form::Dense, false, O};
      return true;
    }
    // The float engine's layer on Float activations; the BN and activation after it follow alone.
    to(Form::Float, st, out);
    if (conv) {
      auto l = std::make_unique<FloatConv>();
      l->weight = weight.value().to(device_);
      l->bias = on(bias, device_);
      l->params = conv->params();
      out.push_back(std::move(l));
    } else {
      auto l = std::make_unique<FloatLinear>();
      l->weight = weight.value().to(device_);
      l->bias = on(bias, device_);
      out.push_back(std::move(l));
    }
    st.channels = O;
    return true;
  }

  // Whether the convolution that reads the images becomes one Bf16Stem step (LowerOptions::stem).
  bool takes_stem(const Tensor& w, const ops::Conv2dParams& p) const {
    const bool direct = stem_ == StemPath::Direct || packed::on_tensor_cores(stem_arithmetic(stem_));
    return stem_ == StemPath::Bf16 || (direct && packed::stem_direct_enabled() && packed::stem_conv_fits(w, p));
  }

  // The model's first convolution on the images in NHWC bf16, with the BN and ReLU after it.
  std::unique_ptr<Bf16Stem> bf16_stem(const nn::Conv2d& conv, const Var& bias, nn::BatchNorm2d* bn, bool relu) const {
    auto l = std::make_unique<Bf16Stem>();
    const Tensor w = conv.weight().value().cpu();
    // cuDNN's bf16 kernels take a multiple of 8 input channels: the images are padded to it as
    // they are converted (one pass), so the weights are padded here, once.
    l->weight = zero_padded_input_channels(w, (w.dim(1) + 7) / 8 * 8).to(device_);
    // The direct kernel (packed::stem_conv_nhwc) reads the images as they are, so the weights too.
    if (packed::stem_conv_fits(w, conv.params())) l->direct_weight = w.to(device_);
    const FoldedAffine f = fold_batchnorm(value(bias), bn, w.dim(0));
    if (f.scale.defined()) l->scale = f.scale.to(device_);
    if (f.shift.defined()) l->shift = f.shift.to(device_);
    l->params = conv.params();
    l->relu = relu;
    l->dense = dense_;
    l->arithmetic = stem_arithmetic(stem_);  // on a device without tensor cores the step runs as Direct's
    return l;
  }

  // models/resnet18.cpp's block with sign activations on ±1 input, fused into W1A1 steps when it
  // is body conv-BN-sign-conv-BN, shortcut none or conv-BN, every conv W1A1's; else null.
  std::unique_ptr<BinaryBlock> binary_block(const std::vector<Item>& body, const std::vector<Item>& sc) const {
    auto* c1 = at<nn::Conv2d>(body, 0);
    auto* c2 = at<nn::Conv2d>(body, 3);
    auto* cs = at<nn::Conv2d>(sc, 0);
    const bool shape = body.size() == 5 && at<nn::BatchNorm2d>(body, 1) && at<nn::SignSTE>(body, 2) &&
                       at<nn::BatchNorm2d>(body, 4) && (sc.empty() || (sc.size() == 2 && at<nn::BatchNorm2d>(sc, 1)));
    if (!shape || !w1a1_fits(c1) || !w1a1_fits(c2) || (!sc.empty() && !w1a1_fits(cs))) return nullptr;
    auto conv = [&](const std::vector<Item>& items, size_t i, bool sign) {
      auto* c = at<nn::Conv2d>(items, i);
      return w1a1(items[i].name, false, c->weight().value(), {c->params().stride, c->params().padding}, c->bias(),
                  at<nn::BatchNorm2d>(items, i + 1), sign);
    };
    auto block = std::make_unique<BinaryBlock>();
    block->first = conv(body, 0, true);
    block->second = conv(body, 3, false);
    if (cs) block->shortcut = std::make_unique<W1A1Layer>(conv(sc, 0, false));
    else block->skip_thresholds = packed::skip_sign_thresholds(block->second.w, block->second.out.scale,
                                                                block->second.out.shift, device_);
    return block;
  }

  // act(body(x) + shortcut(x)): a fused W1A1 block when it fits, else both branches lowered from
  // the block's input and summed in Dense (when the body ends there) or Float, with a ReLU fused
  // into the sum and any other activation lowered after it.
  bool residual(const std::string& name, nn::Residual& r, State& st, Steps& out) {
    reads_images_ = false;  // a stem inside a residual branch would need the sum's forms reconciled: not worth it
    if (st.flat) to(Form::Float, st, out);
    std::vector<Item> body, sc;
    collect(name + ".body.", r.body(), body);
    if (r.shortcut()) collect(name + ".shortcut.", *r.shortcut(), sc);
    if (st.form == Form::Bits && dynamic_cast<nn::SignSTE*>(r.act())) {
      if (auto block = binary_block(body, sc)) {
        st.channels = block->second.w.out_channels();
        out.push_back(std::move(block));
        return true;
      }
    }
    auto sum = std::make_unique<ResidualSum>();
    State bs = st, ss = st;
    if (!layers(body, bs, sum->body) || !layers(sc, ss, sum->shortcut)) return false;
    sum->form = bs.form == Form::Dense ? Form::Dense : Form::Float;
    to(sum->form, bs, sum->body);
    to(sum->form, ss, sum->shortcut);
    sum->relu = dynamic_cast<nn::ReLU*>(r.act()) != nullptr;
    st = {sum->form, false, bs.channels};
    out.push_back(std::move(sum));
    if (!r.act() || dynamic_cast<nn::ReLU*>(r.act())) return true;
    return layers({{name + ".act", r.act()}}, st, out);
  }

  // Layers without weights of their own, in the form they find where they can run there.
  bool other(const std::vector<Item>& items, size_t i, State& st, Steps& out) {
    nn::Module* m = items[i].m;
    if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(m)) {
      to(Form::Float, st, out);
      auto l = std::make_unique<FloatBatchNorm>();
      l->mean = bn->running_mean().to(device_);
      l->var = bn->running_var().to(device_);
      if (bn->affine()) {
        l->weight = on(bn->weight(), device_);
        l->bias = on(bn->bias(), device_);
      }
      l->eps = bn->eps();
      out.push_back(std::move(l));
    } else if (dynamic_cast<nn::SignSTE*>(m)) {
      if (st.form == Form::Bits) return true;  // the sign of ±1: nothing to do
      out.push_back(std::make_unique<Binarize>(st.form));
      st.form = Form::Bits;
    } else if (dynamic_cast<nn::ReLU*>(m) || dynamic_cast<nn::ReLU6*>(m)) {
      const bool six = dynamic_cast<nn::ReLU6*>(m) != nullptr;
      if (six || st.form != Form::Dense) to(Form::Float, st, out);
      out.push_back(std::make_unique<Relu>(st.form, six));
    } else if (auto* mp = dynamic_cast<nn::MaxPool2d*>(m)) {
      if (st.flat) to(Form::Float, st, out);
      out.push_back(std::make_unique<MaxPool>(st.form, mp->kernel(), mp->stride(), mp->padding()));
    } else if (dynamic_cast<nn::GlobalAvgPool*>(m)) {
      if (st.flat) to(Form::Float, st, out);
      out.push_back(std::make_unique<GlobalAvgPool>(st.form));
      if (st.form == Form::Bits) st.form = Form::Float;  // it averages the bits into f32 [N][C]
    } else if (dynamic_cast<nn::Flatten*>(m)) {
      if (st.form == Form::Bits && at<nn::Linear>(items, i + 1)) {
        st.flat = true;  // the Linear reads the bit map whole
        return true;
      }
      if (st.form == Form::Bits) to(Form::Float, st, out);
      out.push_back(std::make_unique<Flatten>(st.form));
    } else {
      why = items[i].name + " is a layer the inference lowering does not know";
      return false;
    }
    return true;
  }

  Device device_;
  bool split_;
  DType dense_;  // Dense activations' type
  StemPath stem_;
  bool reads_images_ = true;  // no layer lowered yet: the next reads the images
};

}  // namespace

packed::StemArithmetic stem_arithmetic(StemPath path) {
  return path == StemPath::TensorCores       ? packed::StemArithmetic::SplitBf16TensorCores
         : path == StemPath::TensorCoresBf16 ? packed::StemArithmetic::Bf16TensorCores
                                             : packed::StemArithmetic::F32;
}

std::unique_ptr<Plan> lower(nn::Module& model, const LowerOptions& options, std::string* why_not) {
  std::vector<Item> items;
  collect("", model, items);
  Builder b(options);
  State st;
  Steps steps;
  auto refuse = [&](const std::string& why) {
    if (why_not) *why_not = why;
    return std::unique_ptr<Plan>();
  };
  if (!b.layers(items, st, steps)) return refuse(b.why);
  if (steps.empty()) return refuse("the model has no layers");
  if (auto* last = dynamic_cast<W1A16Layer*>(steps.back().get())) last->out.dtype = DType::F32;  // the logits
  b.to(Form::Float, st, steps);
  auto plan = std::make_unique<Plan>(options, std::move(steps));
  if (plan->census().packed() == 0)
    return refuse("no conv or linear layer can run packed (weights not all ±1 or {-1, 0, 1}, or shapes the "
                  "packed kernels do not take): the float engine runs this model");
  return plan;
}

}  // namespace mdq::infer

// The W1A1 inference runner (engine/infer/binary_runner.h): walks the module tree into steps at
// build time, tracking whether the activation at each point is real-valued (NCHW f32, the float
// engine's ops) or ±1 (packed NHWC bits, the W1A1 ops); then runs the steps.
#include "engine/infer/binary_runner.h"

#include <sstream>

#include "engine/infer/module_walk.h"
#include "engine/infer/packed_runner.h"  // fold_batchnorm
#include "engine/nn/activation.h"
#include "engine/nn/conv2d.h"
#include "engine/nn/linear.h"
#include "engine/nn/pooling.h"
#include "engine/nn/reshape.h"
#include "engine/ops/activation.h"
#include "engine/ops/batchnorm.h"
#include "engine/ops/conv2d.h"
#include "engine/ops/matmul.h"
#include "engine/ops/pooling.h"
#include "engine/packed/binary_act.h"
#include "engine/packed/bitpack.h"

namespace mdq::infer {

struct BinaryRunner::Step {
  enum class Kind {
    FloatConv, FloatBatchNorm, FloatLinear, FloatReLU, FloatMaxPool, FloatGlobalAvgPool, FloatFlatten,
    Pack,          // f32 NCHW (or [N][C]) -> bits: the sign activation after a float layer
    Unpack,        // bits -> f32 ±1 NCHW, for a float layer after a binary one
    BinaryConv,    // W1A1 conv + [BN] + sign: bits -> bits (SignPack)
    BinaryLinear,  // W1A1 linear on the whole (flattened) bit map: -> bits (SignPack) or f32 d + bias
    BitsMaxPool,   // max of ±1 = OR of bits
    BinaryBlock,   // conv-BN-sign, conv-BN + shortcut, sign: bits -> bits
  } kind = Kind::FloatConv;
  struct W1A1 {  // a W1A1 layer and its epilogue's parameters
    packed::PackedWeights w;
    packed::ConvGeometry g;
    Tensor thresholds;    // SignPack: sign_thresholds_of
    Tensor scale, shift;  // Affine and the residual end: fold_batchnorm
  };
  std::string name;
  Tensor weight, bias;  // FloatConv, FloatLinear: the model's f32 tensors on the device
  ops::Conv2dParams conv;
  Tensor bn_weight, bn_bias, bn_mean, bn_var;  // FloatBatchNorm
  float bn_eps = 1e-5f;
  int64_t pool_k = 0, pool_s = 0, pool_p = 0;
  W1A1 a, b, shortcut;  // BinaryConv / BinaryLinear: a; BinaryBlock: body convs a, b and the shortcut
  bool sign_out = false, has_shortcut = false;
  int64_t channels = 0;  // channels of the bits a binary step writes
};

namespace {

using Step = BinaryRunner::Step;
using Kind = Step::Kind;
using walk::Item;

Tensor on(const Var& v, Device d) { return v.defined() ? v.value().to(d) : Tensor(); }

// Why a layer of ±1 inputs cannot be W1A1 ("" when it can): the kernel's limits.
std::string w1a1_unfit(const Tensor& w, int64_t groups, int64_t taps) {
  if (groups != 1) return "grouped";
  if (taps > 31) return "more than 31 taps";
  if (packed::level_set(w.cpu()) != 2) return "weights not all ±1";
  return "";
}

// Where the activation is between layers at build time.
struct State {
  bool bits = false;  // packed ±1 NHWC; else f32 (NCHW or [N][F])
  bool flat = false;  // bits after a Flatten that only a Linear may consume
  int64_t channels = 0;
};

struct Builder {
  Device device;
  std::string why;

  template <class T>
  static T* at(const std::vector<Item>& items, size_t i) {
    return i < items.size() ? dynamic_cast<T*>(items[i].m) : nullptr;
  }

  void to_float(const std::string& name, State& st, std::vector<Step>& steps) {
    if (!st.bits) return;
    Step s;
    s.kind = Kind::Unpack;
    s.name = name;
    steps.push_back(std::move(s));
    st.bits = false;
    if (st.flat) {
      Step f;
      f.kind = Kind::FloatFlatten;
      steps.push_back(std::move(f));
      st.flat = false;
    }
  }

  Step::W1A1 signpack(const Tensor& w, const Var& bias, nn::BatchNorm2d* bn, const ops::Conv2dParams& p) {
    Step::W1A1 a;
    a.w = packed::pack_binary_weights(w.cpu()).to(device);
    a.g = {p.stride, p.padding};
    a.thresholds = sign_thresholds_of(a.w, bias.defined() ? bias.value() : Tensor(), bn, device);
    return a;
  }
  Step::W1A1 affine(nn::Conv2d& c, nn::BatchNorm2d* bn) {
    Step::W1A1 a;
    a.w = packed::pack_binary_weights(c.weight().value().cpu()).to(device);
    a.g = {c.params().stride, c.params().padding};
    FoldedAffine f = fold_batchnorm(c.bias().defined() ? c.bias().value() : Tensor(), bn, a.w.out_channels());
    if (f.scale.defined()) a.scale = f.scale.to(device);
    if (f.shift.defined()) a.shift = f.shift.to(device);
    return a;
  }

  bool conv_unfit(const std::string& name, nn::Conv2d& c) {
    const Tensor& w = c.weight().value();
    const std::string u = w1a1_unfit(w, c.params().groups, w.dim(2) * w.dim(3));
    if (!u.empty()) why = name + " cannot run W1A1 (" + u + ")";
    return !u.empty();
  }

  // models/resnet18.cpp's BasicBlock on ±1 input: body conv-BN-sign-conv-BN, shortcut empty or
  // conv-BN, act sign.
  bool block(const Item& it, State& st, Step& s) {
    const auto& ch = it.m->children();
    if (!dynamic_cast<nn::SignSTE*>(ch.back().second.get())) {
      why = it.name + ".act is not a sign activation";
      return false;
    }
    if (!st.bits) {
      why = it.name + " has real-valued input (no sign activation before it)";
      return false;
    }
    std::vector<Item> body, sc;
    walk::collect(it.name + ".body.", *ch.front().second, body);
    if (ch.size() == 3) walk::collect(it.name + ".shortcut.", *ch[1].second, sc);
    auto* c1 = at<nn::Conv2d>(body, 0);
    auto* c2 = at<nn::Conv2d>(body, 3);
    if (body.size() != 5 || !c1 || !at<nn::BatchNorm2d>(body, 1) || !at<nn::SignSTE>(body, 2) || !c2 ||
        !at<nn::BatchNorm2d>(body, 4)) {
      why = it.name + ".body is not conv-BN-sign-conv-BN";
      return false;
    }
    auto* cs = at<nn::Conv2d>(sc, 0);
    if (!sc.empty() && (sc.size() != 2 || !cs || !at<nn::BatchNorm2d>(sc, 1))) {
      why = it.name + ".shortcut is not conv-BN";
      return false;
    }
    if (conv_unfit(body[0].name, *c1) || conv_unfit(body[3].name, *c2) || (cs && conv_unfit(sc[0].name, *cs)))
      return false;
    s.kind = Kind::BinaryBlock;
    s.a = signpack(c1->weight().value(), c1->bias(), at<nn::BatchNorm2d>(body, 1), c1->params());
    s.b = affine(*c2, at<nn::BatchNorm2d>(body, 4));
    s.has_shortcut = cs != nullptr;
    if (cs) s.shortcut = affine(*cs, at<nn::BatchNorm2d>(sc, 1));
    s.channels = st.channels = s.b.w.out_channels();
    return true;
  }

  bool steps(const std::vector<Item>& items, State& st, std::vector<Step>& out) {
    for (size_t i = 0; i < items.size(); ++i) {
      const Item& it = items[i];
      Step s;
      s.name = it.name;
      if (auto* conv = dynamic_cast<nn::Conv2d*>(it.m)) {
        const Tensor& w = conv->weight().value();
        auto* bn = at<nn::BatchNorm2d>(items, i + 1);
        const bool sign = at<nn::SignSTE>(items, i + 1 + (bn != nullptr)) != nullptr;
        if (st.bits && !st.flat && sign &&
            w1a1_unfit(w, conv->params().groups, w.dim(2) * w.dim(3)).empty()) {  // W1A1 + BN + sign
          s.kind = Kind::BinaryConv;
          s.a = signpack(w, conv->bias(), bn, conv->params());
          s.channels = st.channels = w.dim(0);
          i += 1 + (bn != nullptr);
        } else {  // real-valued input, or outside the W1A1 kernel's reach: the float engine's conv
          to_float(it.name, st, out);
          s.kind = Kind::FloatConv;
          s.weight = w.to(device);
          s.bias = on(conv->bias(), device);
          s.conv = conv->params();
          st.channels = w.dim(0);
        }
      } else if (auto* lin = dynamic_cast<nn::Linear*>(it.m)) {
        const Tensor& w = lin->weight().value();
        const int64_t in = lin->in_features(), O = lin->out_features();
        auto* bn = at<nn::BatchNorm2d>(items, i + 1);
        const bool sign = at<nn::SignSTE>(items, i + 1 + (bn != nullptr)) != nullptr;
        const int64_t taps = st.channels > 0 && in % st.channels == 0 ? in / st.channels : 0;
        if (st.bits && taps > 0 && (sign || !bn) && w1a1_unfit(w, 1, taps).empty()) {
          // The flattened map [N][H][W][Cw] as one window of H*W taps (x viewed as [N][HW][1][Cw]):
          // the weights' NCHW flatten order c*HW + s becomes [O][C][HW][1].
          s.kind = Kind::BinaryLinear;
          const Tensor w4 = w.cpu().reshape({O, st.channels, taps, 1});
          if (sign) {
            s.a = signpack(w4, lin->bias(), bn, {});
            s.sign_out = true;
            s.channels = st.channels = O;
            i += 1 + (bn != nullptr);
          } else {  // d + bias in f32, as the float engine's matmul + bias
            s.a.w = packed::pack_binary_weights(w4).to(device);
            s.a.shift = on(lin->bias(), device);
            st.bits = false;
          }
          st.flat = false;
        } else {
          st.flat = st.bits;  // the unpacked NCHW map is flattened for the float matmul
          to_float(it.name, st, out);
          s.kind = Kind::FloatLinear;
          s.weight = w.to(device);
          s.bias = on(lin->bias(), device);
          st.channels = O;
        }
      } else if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(it.m)) {
        to_float(it.name, st, out);
        s.kind = Kind::FloatBatchNorm;
        s.bn_mean = bn->running_mean().to(device);
        s.bn_var = bn->running_var().to(device);
        s.bn_weight = bn->affine() ? on(bn->weight(), device) : Tensor();
        s.bn_bias = bn->affine() ? on(bn->bias(), device) : Tensor();
        s.bn_eps = bn->eps();
      } else if (dynamic_cast<nn::SignSTE*>(it.m)) {
        if (st.bits) continue;  // sign of ±1: nothing to do
        s.kind = Kind::Pack;
        st.bits = true;
      } else if (auto* mp = dynamic_cast<nn::MaxPool2d*>(it.m)) {
        s.kind = st.bits && !st.flat ? Kind::BitsMaxPool : Kind::FloatMaxPool;
        if (s.kind == Kind::FloatMaxPool) to_float(it.name, st, out);
        s.pool_k = mp->kernel();
        s.pool_s = mp->stride();
        s.pool_p = mp->padding();
      } else if (dynamic_cast<nn::GlobalAvgPool*>(it.m)) {
        to_float(it.name, st, out);
        s.kind = Kind::FloatGlobalAvgPool;
      } else if (dynamic_cast<nn::Flatten*>(it.m)) {
        if (st.bits && at<nn::Linear>(items, i + 1)) {
          st.flat = true;  // the Linear reads the bit map whole
          continue;
        }
        to_float(it.name, st, out);
        s.kind = Kind::FloatFlatten;
      } else if (dynamic_cast<nn::ReLU*>(it.m)) {
        to_float(it.name, st, out);
        s.kind = Kind::FloatReLU;
      } else if (walk::is_residual_block(*it.m)) {
        if (!block(it, st, s)) return false;
      } else {
        if (dynamic_cast<nn::ReLU6*>(it.m)) why = it.name + " is a ReLU6 (mobilenetv2)";
        else why = it.name + " is a layer the W1A1 runner does not know";
        return false;
      }
      out.push_back(std::move(s));
    }
    return true;
  }
};

void count_binary(const std::vector<Step>& steps, int64_t& convs, int64_t& linears, int64_t& blocks,
                  int64_t& fconvs, int64_t& flinears) {
  for (const Step& s : steps) {
    convs += s.kind == Kind::BinaryConv ? 1 : s.kind == Kind::BinaryBlock ? 2 + s.has_shortcut : 0;
    blocks += s.kind == Kind::BinaryBlock;
    linears += s.kind == Kind::BinaryLinear;
    fconvs += s.kind == Kind::FloatConv;
    flinears += s.kind == Kind::FloatLinear;
  }
}

packed::BinaryOutput sign_pack(const Step::W1A1& a) {
  return {packed::BinaryOutputMode::SignPack, Tensor(), Tensor(), a.thresholds};
}

}  // namespace

bool has_sign_activations(const nn::Module& model) {
  if (dynamic_cast<const nn::SignSTE*>(&model)) return true;
  for (const auto& [name, child] : model.children())
    if (has_sign_activations(*child)) return true;
  return false;
}

Tensor sign_thresholds_of(const packed::PackedWeights& w, const Tensor& bias, nn::BatchNorm2d* bn, Device device) {
  const int64_t O = w.out_channels(), range = w.kernel_h() * w.kernel_w() * w.channels, R = 2 * range + 1;
  MDQ_CHECK(!bias.defined() || bias.numel() == O, "sign_thresholds_of: bias " << bias.describe() << " needs " << O
                                                                               << " values");
  MDQ_CHECK(O * R < (int64_t{1} << 31), "sign_thresholds_of: " << O << " channels x " << R << " values too many");
  const std::vector<float> b = bias.defined() ? bias.to_vector() : std::vector<float>(static_cast<size_t>(O), 0.f);
  // Every possible layer output d + bias (the float engine's conv: d exact, + bias rounded once)
  // as an NCHW [1][O][R][1] tensor, channel o's candidates along H, through the float engine's BN.
  std::vector<float> cand(static_cast<size_t>(O * R));
  for (int64_t o = 0; o < O; ++o)
    for (int64_t j = 0; j < R; ++j) cand[static_cast<size_t>(o * R + j)] = static_cast<float>(j - range) + b[o];
  Tensor v = Tensor::from_vector(cand, {1, O, R, 1});
  if (bn) {
    MDQ_CHECK(bn->channels() == O, "sign_thresholds_of: BatchNorm2d(" << bn->channels() << ") after " << O
                                                                      << " outputs");
    Tensor mean = bn->running_mean().to(device), var = bn->running_var().to(device);
    const Tensor g = bn->affine() ? bn->weight().value().to(device) : Tensor();
    const Tensor beta = bn->affine() ? bn->bias().value().to(device) : Tensor();
    v = ops::batch_norm_forward(v.to(device), g, beta, mean, var, false, 0.1f, bn->eps()).out.cpu();
  }
  Tensor t = Tensor::empty({2, O}, DType::I32);
  int32_t* dmin = t.data<int32_t>();
  int32_t* flip = dmin + O;
  for (int64_t o = 0; o < O; ++o) {
    const float* p = v.data<float>() + o * R;
    auto bit = [&](int64_t j) { return p[j] >= 0.f; };  // SignSTE: +1 for y >= 0, sign(0) = +1
    const bool first = bit(0);
    int64_t j = 1;
    while (j < R && bit(j) == first) ++j;
    for (int64_t k = j; k < R; ++k)
      MDQ_CHECK(bit(k) != first, "sign_thresholds_of: BN output of channel " << o << " is not monotone in d at d = "
                                                                             << k - range);
    // Constant: (d >= -range) is always true, flip makes it the constant. Else the sign changes
    // at d = j - range: upward (false -> true) is d >= dmin, downward is its negation.
    dmin[o] = static_cast<int32_t>(j == R ? -range : j - range);
    flip[o] = j == R ? !first : first;
  }
  return t.to(device);
}

BinaryRunner::BinaryRunner() = default;
BinaryRunner::~BinaryRunner() = default;

std::unique_ptr<BinaryRunner> BinaryRunner::build(nn::Module& model, Device device, std::string* why_not) {
  std::vector<Item> items;
  walk::collect("", model, items);
  auto runner = std::make_unique<BinaryRunner>();
  runner->device_ = device;
  Builder b{device, ""};
  State st;
  if (!b.steps(items, st, runner->steps_)) {
    if (why_not) *why_not = b.why;
    return nullptr;
  }
  b.to_float("output", st, runner->steps_);  // a net that ends on a sign gives ±1 logits
  return runner;
}

Tensor BinaryRunner::logits(const Tensor& images) {
  MDQ_CHECK(images.dtype() == DType::F32 && images.ndim() == 4,
            "BinaryRunner::logits: expects f32 NCHW images, got " << images.describe());
  MDQ_CHECK(images.device() == device_, "BinaryRunner::logits: images " << images.describe() << " are not on "
                                                                        << device_name(device_));
  const int64_t N = images.dim(0);
  Tensor x = images;
  int64_t channels = 0;  // of the bits in x, while x holds bits
  for (const Step& s : steps_) {
    switch (s.kind) {
      case Kind::FloatConv: x = ops::conv2d_forward(x, s.weight, s.bias, s.conv); break;
      case Kind::FloatBatchNorm: {
        Tensor mean = s.bn_mean, var = s.bn_var;  // eval: read, not updated
        x = ops::batch_norm_forward(x, s.bn_weight, s.bn_bias, mean, var, false, 0.1f, s.bn_eps).out;
        break;
      }
      case Kind::FloatLinear:
        x = ops::matmul(x, s.weight, false, true);
        if (s.bias.defined()) x = ops::add_row_vector(x, s.bias);
        break;
      case Kind::FloatReLU: x = ops::relu_forward(x); break;
      case Kind::FloatMaxPool: x = ops::max_pool2d_forward(x, s.pool_k, s.pool_s, s.pool_p).out; break;
      case Kind::FloatGlobalAvgPool: x = ops::global_avg_pool_forward(x); break;
      case Kind::FloatFlatten: x = x.reshape({N, x.numel() / N}); break;
      case Kind::Pack:
        channels = x.dim(1);
        x = packed::pack_signs_nchw(x);
        if (x.ndim() == 2) x = x.reshape({N, 1, 1, x.dim(1)});
        break;
      case Kind::Unpack: x = packed::unpack_signs_nchw(x, channels); break;
      case Kind::BinaryConv:
        x = packed::binary_conv2d(x, s.a.w, s.a.g, sign_pack(s.a));
        channels = s.channels;
        break;
      case Kind::BinaryLinear: {
        const int64_t taps = x.dim(1) * x.dim(2);
        MDQ_CHECK(taps == s.a.w.kernel_h(), "BinaryRunner: " << s.name << " takes a map of " << s.a.w.kernel_h()
                                                             << " pixels, got bits " << x.describe());
        const Tensor in = x.reshape({N, taps, 1, x.dim(3)});
        if (s.sign_out) {
          x = packed::binary_conv2d(in, s.a.w, {}, sign_pack(s.a));
          channels = s.channels;
        } else {
          x = packed::binary_conv2d(in, s.a.w, {}, {packed::BinaryOutputMode::Affine, Tensor(), s.a.shift});
          x = x.reshape({N, x.dim(3)});
        }
        break;
      }
      case Kind::BitsMaxPool: x = packed::max_pool2d_bits(x, s.pool_k, s.pool_s, s.pool_p); break;
      case Kind::BinaryBlock: {
        const Tensor h = packed::binary_conv2d(x, s.a.w, s.a.g, sign_pack(s.a));
        const Tensor skip = s.has_shortcut ? packed::binary_conv2d(x, s.shortcut.w, s.shortcut.g,
                                                                   {packed::BinaryOutputMode::Affine,
                                                                    s.shortcut.scale, s.shortcut.shift})
                                           : packed::unpack_signs(x, channels);  // identity: the ±1 input
        x = packed::binary_conv2d_residual(h, s.b.w, s.b.g, s.b.scale, s.b.shift, skip).bits;
        channels = s.channels;
        break;
      }
    }
  }
  return x.ndim() == 2 ? x : x.reshape({N, x.numel() / N});
}

std::string BinaryRunner::summary() const {
  int64_t convs = 0, linears = 0, blocks = 0, fconvs = 0, flinears = 0;
  count_binary(steps_, convs, linears, blocks, fconvs, flinears);
  std::ostringstream s;
  auto plural = [](int64_t n, const char* what) { return std::to_string(n) + " " + what + (n == 1 ? "" : "s"); };
  s << plural(convs, "W1A1 conv");
  if (blocks) s << " (" << plural(blocks, "residual block") << ")";
  if (linears) s << ", " << plural(linears, "W1A1 linear");
  if (fconvs || flinears) s << "; float: " << plural(fconvs, "conv") << ", " << plural(flinears, "linear");
  return s.str();
}

}  // namespace mdq::infer

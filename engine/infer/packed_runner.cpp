// The packed inference runner (engine/infer/packed_runner.h): walks the module tree into fused
// steps at build time, then runs them on NHWC activations, bf16 (PackedPrecision::BF16) or f32
// split into bf16 hi + lo channels at each conv/linear (PackedPrecision::SplitBF16).
#include "engine/infer/packed_runner.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "engine/infer/module_walk.h"
#include "engine/nn/activation.h"
#include "engine/nn/conv2d.h"
#include "engine/nn/linear.h"
#include "engine/nn/pooling.h"
#include "engine/nn/reshape.h"
#include "engine/packed/bitpack.h"
#include "kernels/nhwc_bf16.h"

namespace mdq::infer {

struct PackedRunner::Step {
  enum class Kind { Conv, Linear, MaxPool, GlobalAvgPool, Flatten, Residual } kind = Kind::Conv;
  packed::PackedWeights w;  // Conv, Linear
  packed::ConvGeometry g;
  packed::FloatOutput out;  // folded BN + bias, ReLU
  int pool_k = 0, pool_s = 0, pool_p = 0;
  std::vector<Step> body, shortcut;  // Residual: relu(body(x) + (shortcut empty ? x : shortcut(x)))
};

namespace {

using Step = PackedRunner::Step;

using walk::collect;
using walk::is_residual_block;
using walk::Item;

// w [O][C] or [O][C][KH][KW] -> [O][2C](...): the weights concatenated with themselves along the
// input channels, so that a layer fed split-bf16 input [hi | lo] (kernels::split_bf16_nhwc)
// computes sum w hi + sum w lo. For a linear layer after a Flatten, C is the flattened length
// C·H·W in NCHW order, which the split of the [N][C·H·W] activations keeps.
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

bool pack(const std::string& name, const Tensor& w, Device device, bool split, packed::PackedWeights& out,
          std::string& why) {
  const Tensor host = split ? doubled_input_channels(w.cpu()) : w.cpu();
  switch (packed::level_set(host)) {
    case 2: out = packed::pack_binary_weights(host).to(device); return true;
    case 3: out = packed::pack_ternary_weights(host).to(device); return true;
    default:
      why = name + " has weights that are not all ±1 or {-1, 0, 1} (a float layer)";
      return false;
  }
}

bool build_steps(const std::vector<Item>& items, Device device, bool split, std::vector<Step>& steps, std::string& why);

bool build_residual(const Item& it, Device device, bool split, Step& s, std::string& why) {
  s.kind = Step::Kind::Residual;
  const auto& ch = it.m->children();
  if (!dynamic_cast<nn::ReLU*>(ch.back().second.get())) {
    why = it.name + ".act is not a ReLU (binary or ReLU6 activations are not covered)";
    return false;
  }
  std::vector<Item> body, shortcut;
  collect(it.name + ".body.", *ch.front().second, body);
  if (ch.size() == 3) collect(it.name + ".shortcut.", *ch[1].second, shortcut);
  return build_steps(body, device, split, s.body, why) && build_steps(shortcut, device, split, s.shortcut, why);
}

bool build_steps(const std::vector<Item>& items, Device device, bool split, std::vector<Step>& steps,
                 std::string& why) {
  for (size_t i = 0; i < items.size(); ++i) {
    const Item& it = items[i];
    Step s;
    auto* conv = dynamic_cast<nn::Conv2d*>(it.m);
    auto* linear = dynamic_cast<nn::Linear*>(it.m);
    if (conv || linear) {
      const Var weight = conv ? conv->weight() : linear->weight();
      const Var bias = conv ? conv->bias() : linear->bias();
      if (conv) {
        const Tensor& w = weight.value();
        if (conv->params().groups != 1) {
          why = it.name + " is a grouped/depthwise convolution (groups " + std::to_string(conv->params().groups) +
                "), which w1a16_conv2d does not cover";
          return false;
        }
        if (w.dim(2) != w.dim(3)) {
          why = it.name + " has a non-square kernel";
          return false;
        }
        s.kind = Step::Kind::Conv;
        s.g = {conv->params().stride, conv->params().padding};
      } else {
        s.kind = Step::Kind::Linear;
      }
      if (!pack(it.name, weight.value(), device, split, s.w, why)) return false;
      nn::BatchNorm2d* bn = nullptr;
      if (i + 1 < items.size() && (bn = dynamic_cast<nn::BatchNorm2d*>(items[i + 1].m))) ++i;
      if (i + 1 < items.size() && dynamic_cast<nn::ReLU*>(items[i + 1].m)) {
        s.out.relu = true;
        ++i;
      }
      FoldedAffine f = fold_batchnorm(bias.defined() ? bias.value() : Tensor(), bn, s.w.out_channels());
      s.out.scale = bn ? f.scale.to(device) : Tensor();
      s.out.shift = f.shift.defined() ? f.shift.to(device) : Tensor();
      s.out.dtype = split ? DType::F32 : DType::BF16;
    } else if (auto* mp = dynamic_cast<nn::MaxPool2d*>(it.m)) {
      s.kind = Step::Kind::MaxPool;
      s.pool_k = static_cast<int>(mp->kernel());
      s.pool_s = static_cast<int>(mp->stride());
      s.pool_p = static_cast<int>(mp->padding());
    } else if (dynamic_cast<nn::GlobalAvgPool*>(it.m)) {
      s.kind = Step::Kind::GlobalAvgPool;
    } else if (dynamic_cast<nn::Flatten*>(it.m)) {
      s.kind = Step::Kind::Flatten;
    } else if (is_residual_block(*it.m)) {
      if (!build_residual(it, device, split, s, why)) return false;
    } else {
      if (dynamic_cast<nn::SignSTE*>(it.m)) why = it.name + " is a binary activation (act_bits = 1)";
      else if (dynamic_cast<nn::ReLU6*>(it.m)) why = it.name + " is a ReLU6 (mobilenetv2, with depthwise convs too)";
      else if (dynamic_cast<nn::BatchNorm2d*>(it.m)) why = it.name + " is a BatchNorm not right after a conv/linear";
      else if (dynamic_cast<nn::ReLU*>(it.m)) why = it.name + " is a ReLU not right after a conv/linear layer";
      else why = it.name + " is a layer the packed runner does not know";
      return false;
    }
    steps.push_back(std::move(s));
  }
  return true;
}

// ---- the forward pass on NHWC activations ([N][H][W][C], or [N][C] after pooling): bf16 in
// BF16 mode, f32 in SplitBF16 mode. The passes below take either; by_dtype picks the element
// type (uint16_t = bf16 bits, float) of the kernels/nhwc_bf16.h template.

template <class F>
void by_dtype(const Tensor& x, F&& f) {
  MDQ_CHECK(x.dtype() == DType::BF16 || x.dtype() == DType::F32,
            "PackedRunner: activations must be bf16 or f32, got " << x.describe());
  if (x.dtype() == DType::BF16) f(uint16_t{});
  else f(float{});
}

Tensor maxpool(const Tensor& x, const Step& s) {
  MDQ_CHECK(x.ndim() == 4, "PackedRunner: max pool needs NHWC activations, got " << x.describe());
  const int N = static_cast<int>(x.dim(0)), H = static_cast<int>(x.dim(1)), W = static_cast<int>(x.dim(2)),
            C = static_cast<int>(x.dim(3));
  const int OH = ops::window_output_size(H, s.pool_k, s.pool_s, s.pool_p);
  const int OW = ops::window_output_size(W, s.pool_k, s.pool_s, s.pool_p);
  Tensor y = Tensor::empty({N, OH, OW, C}, x.dtype(), x.device());
  by_dtype(x, [&](auto zero) {
    using T = decltype(zero);
    if (x.is_cuda()) {
#ifdef MDQ_HAS_CUDA
      kernels::maxpool_nhwc<T>(x.data<T>(), y.data<T>(), N, H, W, C, s.pool_k, s.pool_s, s.pool_p);
#endif
    } else {
      kernels::reference::maxpool_nhwc<T>(x.data<T>(), y.data<T>(), N, H, W, C, s.pool_k, s.pool_s, s.pool_p);
    }
  });
  return y;
}

Tensor global_avg_pool(const Tensor& x) {
  if (x.ndim() == 2) return x;
  const int N = static_cast<int>(x.dim(0)), HW = static_cast<int>(x.dim(1) * x.dim(2)),
            C = static_cast<int>(x.dim(3));
  Tensor y = Tensor::empty({N, C}, x.dtype(), x.device());
  by_dtype(x, [&](auto zero) {
    using T = decltype(zero);
    if (x.is_cuda()) {
#ifdef MDQ_HAS_CUDA
      kernels::avgpool_nhwc<T, T>(x.data<T>(), y.data<T>(), N, HW, C);
#endif
    } else {
      kernels::reference::avgpool_nhwc<T, T>(x.data<T>(), y.data<T>(), N, HW, C);
    }
  });
  return y;
}

// NHWC -> [N][C*H*W] in NCHW order, the order nn::Flatten gives the float engine's linear layer.
Tensor flatten(const Tensor& x) {
  if (x.ndim() == 2) return x;
  const int64_t N = x.dim(0), HW = x.dim(1) * x.dim(2), C = x.dim(3);
  if (HW == 1) return x.reshape({N, C});
  Tensor y = Tensor::empty({N, C * HW}, x.dtype(), x.device());
  by_dtype(x, [&](auto zero) {
    using T = decltype(zero);
    if (x.is_cuda()) {
#ifdef MDQ_HAS_CUDA
      kernels::nhwc_to_nchw<T>(x.data<T>(), y.data<T>(), N, HW, static_cast<int>(C));
#endif
    } else {
      kernels::reference::nhwc_to_nchw<T>(x.data<T>(), y.data<T>(), N, HW, static_cast<int>(C));
    }
  });
  return y;
}

// relu(a + b) in f32, stored as the activations' type (one bf16 rounding in BF16 mode).
Tensor add_relu(const Tensor& a, const Tensor& b) {
  MDQ_CHECK(a.shape() == b.shape() && a.dtype() == b.dtype(),
            "PackedRunner: residual branch " << a.describe() << " and shortcut " << b.describe() << " differ");
  const int64_t C = a.dim(a.ndim() - 1), P = a.numel() / C;
  Tensor y = Tensor::empty(a.shape(), a.dtype(), a.device());
  by_dtype(a, [&](auto zero) {
    using T = decltype(zero);
    if (a.is_cuda()) {
#ifdef MDQ_HAS_CUDA
      kernels::affine_act_nhwc<T>(a.data<T>(), nullptr, nullptr, b.data<T>(), true, y.data<T>(), P,
                                  static_cast<int>(C));
#endif
    } else {
      kernels::reference::affine_act_nhwc<T>(a.data<T>(), nullptr, nullptr, b.data<T>(), true, y.data<T>(), P,
                                             static_cast<int>(C));
    }
  });
  return y;
}

// A conv/linear layer's input: bf16 activations as they are (BF16 mode); f32 ones (SplitBF16
// mode) as bf16 [..., 2C] = [hi | lo], for the weights packed with doubled input channels.
Tensor layer_input(const Tensor& x) {
  if (x.dtype() == DType::BF16) return x;
  const int64_t C = x.dim(x.ndim() - 1), P = x.numel() / C;
  Shape s = x.shape();
  s.back() = 2 * C;
  Tensor y = Tensor::empty(s, DType::BF16, x.device());
  if (x.is_cuda()) {
#ifdef MDQ_HAS_CUDA
    kernels::split_bf16_nhwc(x.data<float>(), y.data<uint16_t>(), P, static_cast<int>(C));
#endif
  } else {
    kernels::reference::split_bf16_nhwc(x.data<float>(), y.data<uint16_t>(), P, static_cast<int>(C));
  }
  return y;
}

// Runs steps on x; the last step of the network (final) writes f32.
Tensor run_steps(const std::vector<Step>& steps, Tensor x, bool final) {
  for (size_t i = 0; i < steps.size(); ++i) {
    const Step& s = steps[i];
    const bool last = final && i + 1 == steps.size();
    switch (s.kind) {
      case Step::Kind::Conv: {
        MDQ_CHECK(x.ndim() == 4, "PackedRunner: a convolution needs NHWC activations, got " << x.describe());
        packed::FloatOutput o = s.out;
        if (last) o.dtype = DType::F32;
        x = packed::w1a16_conv2d(layer_input(x), s.w, s.g, o);
        break;
      }
      case Step::Kind::Linear: {
        if (x.ndim() == 4) x = flatten(x);  // a 1x1 map or an implicit flatten
        packed::FloatOutput o = s.out;
        if (last) o.dtype = DType::F32;
        x = packed::w1a16_linear(layer_input(x), s.w, o);
        break;
      }
      case Step::Kind::MaxPool: x = maxpool(x, s); break;
      case Step::Kind::GlobalAvgPool: x = global_avg_pool(x); break;
      case Step::Kind::Flatten: x = flatten(x); break;
      case Step::Kind::Residual: {
        Tensor skip = s.shortcut.empty() ? x : run_steps(s.shortcut, x, false);
        x = add_relu(run_steps(s.body, x, false), skip);
        break;
      }
    }
  }
  if (final && x.dtype() == DType::BF16) x = packed::to_f32(x);
  return x;
}

void count(const std::vector<Step>& steps, int64_t (&n)[2][2]) {  // [conv, linear][binary, ternary]
  for (const Step& s : steps) {
    if (s.kind == Step::Kind::Conv || s.kind == Step::Kind::Linear)
      ++n[s.kind == Step::Kind::Linear][s.w.ternary()];
    count(s.body, n);
    count(s.shortcut, n);
  }
}

}  // namespace

FoldedAffine fold_batchnorm(const Tensor& bias, nn::BatchNorm2d* bn, int64_t out_channels) {
  const int64_t O = out_channels;
  if (bias.defined())
    MDQ_CHECK(bias.numel() == O, "fold_batchnorm: bias " << bias.describe() << " needs " << O << " values");
  FoldedAffine f;
  if (!bn) {
    if (bias.defined()) f.shift = bias.cpu().reshape({O});
    return f;
  }
  MDQ_CHECK(bn->channels() == O, "fold_batchnorm: BatchNorm2d(" << bn->channels() << ") after a layer with " << O
                                                                << " outputs");
  const std::vector<float> b = bias.defined() ? bias.to_vector() : std::vector<float>(static_cast<size_t>(O), 0.f);
  const std::vector<float> mean = bn->running_mean().to_vector(), var = bn->running_var().to_vector();
  std::vector<float> gamma(static_cast<size_t>(O), 1.f), beta(static_cast<size_t>(O), 0.f);
  if (bn->affine()) {
    gamma = bn->weight().value().to_vector();
    beta = bn->bias().value().to_vector();
  }
  std::vector<float> scale(static_cast<size_t>(O)), shift(static_cast<size_t>(O));
  for (size_t c = 0; c < static_cast<size_t>(O); ++c) {
    const double invstd = 1.0 / std::sqrt(static_cast<double>(var[c]) + bn->eps());
    const double sc = invstd * gamma[c];
    scale[c] = static_cast<float>(sc);
    shift[c] = static_cast<float>((static_cast<double>(b[c]) - mean[c]) * sc + beta[c]);
  }
  f.scale = Tensor::from_vector(scale, {O});
  f.shift = Tensor::from_vector(shift, {O});
  return f;
}

PackedRunner::PackedRunner() = default;
PackedRunner::~PackedRunner() = default;

const char* packed_precision_name(PackedPrecision p) { return p == PackedPrecision::BF16 ? "bf16" : "split"; }

PackedPrecision parse_packed_precision(const std::string& name) {
  if (name == "bf16") return PackedPrecision::BF16;
  MDQ_CHECK(name == "split", "packed precision must be split or bf16, got '" << name << "'");
  return PackedPrecision::SplitBF16;
}

std::unique_ptr<PackedRunner> PackedRunner::build(nn::Module& model, Device device, std::string* why_not,
                                                  PackedPrecision precision) {
  std::vector<Item> items;
  collect("", model, items);
  auto runner = std::make_unique<PackedRunner>();
  runner->device_ = device;
  runner->precision_ = precision;
  std::string why;
  if (!build_steps(items, device, precision == PackedPrecision::SplitBF16, runner->steps_, why)) {
    if (why_not) *why_not = why;
    return nullptr;
  }
  return runner;
}

Tensor PackedRunner::logits(const Tensor& images) {
  MDQ_CHECK(images.dtype() == DType::F32 && images.ndim() == 4,
            "PackedRunner::logits: expects f32 NCHW images, got " << images.describe());
  MDQ_CHECK(images.device() == device_, "PackedRunner::logits: images " << images.describe() << " are not on "
                                                                        << device_name(device_));
  const int64_t N = images.dim(0), C = images.dim(1), H = images.dim(2), W = images.dim(3);
  // BF16 rounds the images here; SplitBF16 keeps them f32 and the first conv splits them (C -> 2C).
  Tensor x = Tensor::empty({N, H, W, C}, precision_ == PackedPrecision::BF16 ? DType::BF16 : DType::F32, device_);
  by_dtype(x, [&](auto zero) {
    using T = decltype(zero);
    if (images.is_cuda()) {
#ifdef MDQ_HAS_CUDA
      kernels::nchw_f32_to_nhwc<T>(images.data<float>(), x.data<T>(), N, static_cast<int>(C), H * W);
#endif
    } else {
      kernels::reference::nchw_f32_to_nhwc<T>(images.data<float>(), x.data<T>(), N, static_cast<int>(C), H * W);
    }
  });
  Tensor y = run_steps(steps_, x, true);
  return y.ndim() == 2 ? y : y.reshape({N, y.numel() / N});
}

std::string PackedRunner::summary() const {
  int64_t n[2][2] = {{0, 0}, {0, 0}};
  count(steps_, n);
  std::ostringstream s;
  const char* kind[2] = {"conv", "linear"};
  const char* levels[2] = {"binary", "ternary"};
  bool first = true;
  for (int k = 0; k < 2; ++k)
    for (int t = 0; t < 2; ++t)
      if (n[k][t]) {
        s << (first ? "" : ", ") << n[k][t] << " " << levels[t] << " " << kind[k] << (n[k][t] > 1 ? "s" : "");
        first = false;
      }
  return s.str();
}

}  // namespace mdq::infer

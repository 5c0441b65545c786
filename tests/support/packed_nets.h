// Test helpers for the inference lowering (engine/infer/lower.h): tiny model-zoo networks with
// every parameter rounded to ±1 (or {-1, 0, 1}) and BatchNorm running statistics set to
// non-trivial values of the right size, a small network that takes every path of the lowering,
// and a comparison of two logit matrices.
#pragma once
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/nn/batchnorm.h"
#include "engine/nn/conv2d.h"
#include "engine/nn/activation.h"
#include "engine/nn/linear.h"
#include "engine/nn/pooling.h"
#include "engine/nn/residual.h"
#include "models/model_zoo.h"
#include "models/random_rounded.h"
#include "tests/support/testing.h"

namespace mdq::testing {

// Model-zoo networks with random levels (models/random_rounded.h).
using models::round_randomly;
using models::rounded_model;

// A network for 3-channel 16x16 images and 10 classes that takes every path of the lowering,
// the binary part first (so that no sign reads a W1A16 value): a stem conv on the image with a
// sign after it (float), a W1A1 conv-BN-sign, a max pool of bits (OR), a W1A1 residual block
// (identity skip, sign after the sum), a conv with float weights on the ±1 map (float: set after
// round_randomly by float_weights_in_mixed_net), then ReLU layers on W1A16: a strided conv, a
// residual block summed in NHWC, one with a 1x1 strided shortcut (ternary after
// ternary_shortcut_in_mixed_net), global average pooling and the classifier.
inline std::shared_ptr<nn::Module> mixed_net(uint64_t seed) {
  using std::make_shared;
  auto conv = [&](int64_t in, int64_t out, int64_t k, int64_t stride) {
    return make_shared<nn::Conv2d>(in, out, k, stride, k / 2, 1, false, seed++);
  };
  auto conv_bn = [&](nn::Sequential& s, int64_t in, int64_t out, int64_t stride, std::shared_ptr<nn::Module> act) {
    s.add(conv(in, out, 3, stride));
    s.add(make_shared<nn::BatchNorm2d>(out));
    if (act) s.add(act);
  };
  auto net = make_shared<nn::Sequential>();
  conv_bn(*net, 3, 8, 1, make_shared<nn::SignSTE>());   // 0-2
  conv_bn(*net, 8, 16, 1, make_shared<nn::SignSTE>());  // 3-5
  net->add(make_shared<nn::MaxPool2d>(2, 2));           // 6
  auto b1 = make_shared<nn::Sequential>();
  conv_bn(*b1, 16, 16, 1, make_shared<nn::SignSTE>());
  conv_bn(*b1, 16, 16, 1, nullptr);
  net->add(make_shared<nn::Residual>(b1, nullptr, make_shared<nn::SignSTE>()));  // 7
  conv_bn(*net, 16, 16, 1, make_shared<nn::ReLU>());   // 8-10
  conv_bn(*net, 16, 32, 2, make_shared<nn::ReLU>());   // 11-13
  auto b2 = make_shared<nn::Sequential>();
  conv_bn(*b2, 32, 32, 1, make_shared<nn::ReLU>());
  conv_bn(*b2, 32, 32, 1, nullptr);
  net->add(make_shared<nn::Residual>(b2, nullptr, make_shared<nn::ReLU>()));  // 14
  auto b3 = make_shared<nn::Sequential>(), sc = make_shared<nn::Sequential>();
  conv_bn(*b3, 32, 64, 2, make_shared<nn::ReLU>());
  conv_bn(*b3, 64, 64, 1, nullptr);
  sc->add(conv(32, 64, 1, 2));
  sc->add(make_shared<nn::BatchNorm2d>(64));
  net->add(make_shared<nn::Residual>(b3, sc, make_shared<nn::ReLU>()));  // 15
  net->add(make_shared<nn::GlobalAvgPool>());                           // 16
  net->add(make_shared<nn::Linear>(64, 10, true, seed++));              // 17
  return net;
}
inline void float_weights_in_mixed_net(nn::Module& net, uint64_t seed) {
  for (const nn::ParamRef& p : net.parameters())
    if (p.name == "8.weight") {
      Var v = p.var;
      v.value().copy_from(random_tensor(v.value().shape(), seed).to(v.value().device()));
    }
}
inline void ternary_shortcut_in_mixed_net(nn::Module& net, uint64_t seed) {
  for (const nn::ParamRef& p : net.parameters())
    if (p.name == "15.shortcut.0.weight") {
      Var v = p.var;
      v.value().copy_from(random_ternary(v.value().shape(), seed).to(v.value().device()));
    }
}
// What lower() makes of mixed_net after both changes.
inline constexpr char kMixedNetSummary[] =
    "W1A1: 3 convs (1 residual block); W1A16: 5 binary convs, 1 ternary conv, 1 binary linear; float: 2 convs";

// BN running means moved to the nearest half-integer (integer inputs then never hit 0 exactly
// or within 0.5 of it after the subtraction).
inline void half_integer_means(nn::Module& m) {
  if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(&m)) {
    Tensor mean = bn->running_mean().cpu();
    for (int64_t c = 0; c < mean.numel(); ++c) mean.data<float>()[c] = std::floor(mean.data<float>()[c]) + 0.5f;
    bn->running_mean().copy_from(mean.to(bn->running_mean().device()));
  }
  for (const auto& [name, child] : m.children()) half_integer_means(*child);
}

inline Tensor float_logits(nn::Module& model, const Tensor& images) {
  NoGradScope no_grad;
  return model.forward(Var(images)).value().cpu();
}

// How two logit matrices [N][K] agree: the largest difference relative to the largest float
// logit of its row, top-1 agreement, and disagreements on rows whose float top-1 wins by more
// than `margin` (relative to the row's largest |logit|), which no bf16 rounding should flip.
struct LogitAgreement {
  double worst_rel_diff = 0;
  int64_t worst_row = -1, rows = 0, top1_agree = 0, clear_disagree = 0;
  double agree_frac() const { return rows ? static_cast<double>(top1_agree) / rows : 1.0; }
};
inline LogitAgreement compare_logits(const Tensor& packed, const Tensor& reference, double margin) {
  REQUIRE(packed.shape() == reference.shape());
  const std::vector<float> a = packed.cpu().to_vector(), b = reference.cpu().to_vector();
  const int64_t N = reference.dim(0), K = reference.dim(1);
  LogitAgreement r;
  r.rows = N;
  for (int64_t n = 0; n < N; ++n) {
    const float* pa = &a[static_cast<size_t>(n * K)];
    const float* pb = &b[static_cast<size_t>(n * K)];
    double scale = 1e-6;
    for (int64_t k = 0; k < K; ++k) scale = std::max(scale, std::fabs(static_cast<double>(pb[k])));
    int64_t ta = 0, tb = 0;
    for (int64_t k = 0; k < K; ++k) {
      const double d = std::fabs(static_cast<double>(pa[k]) - pb[k]) / scale;
      if (!(d <= r.worst_rel_diff)) {  // NaN counts as worst
        r.worst_rel_diff = std::isnan(d) ? INFINITY : d;
        r.worst_row = n;
      }
      if (pa[k] > pa[ta]) ta = k;
      if (pb[k] > pb[tb]) tb = k;
    }
    double second = -INFINITY;
    for (int64_t k = 0; k < K; ++k)
      if (k != tb) second = std::max(second, static_cast<double>(pb[k]));
    if (ta == tb) ++r.top1_agree;
    else if ((pb[tb] - second) / scale > margin) ++r.clear_disagree;
  }
  return r;
}

}  // namespace mdq::testing

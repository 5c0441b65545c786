// The packed inference runner (engine/infer/packed_runner.h) on the CPU, where the packed ops
// run their reference loops: BN folding against hand values, the layout/pool references
// against the float engine's NCHW ops, tiny rounded smallcnn / ResNet-18 / VGG-16 against the
// float engine in eval mode in both precisions, the split-bf16 reference, and the refusals
// (mobilenetv2, binary activations, float weights).
// Tolerances, relative to each row's max|logit| (top-1 agreement >= 99% in both):
//   SplitBF16: each layer's input is hi + lo, within 2^-16 of the f32 value, and everything
//     else is f32, so the logits are within kSplit.logit = 5e-5 of the float engine's (measured
//     worst: 1.0e-5 on ResNet-18, 5-7e-6 on the others) and no row whose float margin exceeds
//     0.1% flips;
//   BF16: activations are rounded to bf16 (relative error <= 2^-8) after every layer, so logits
//     may differ by a few bf16 ulps: 3% (measured worst 0.2-1.2%), no flip above a 5% margin.
#include "apps/common/builders.h"
#include "apps/common/packed_model.h"
#include "data/dataset.h"
#include "engine/infer/packed_runner.h"
#include "engine/ops/pooling.h"
#include "engine/packed/bitpack.h"
#include "kernels/nhwc_bf16.h"
#include "tests/support/packed_nets.h"
#include "tests/support/testing.h"

using namespace mdq;

namespace {

struct Tolerance {
  double logit, margin;
};
constexpr Tolerance kSplit{5e-5, 1e-3}, kBf16{0.03, 0.05};
const Tolerance& tolerance(infer::PackedPrecision p) { return p == infer::PackedPrecision::BF16 ? kBf16 : kSplit; }

// Returns the worst |packed - float| / max|logit| over the rows.
double check_runner(const std::string& name, models::ModelOptions o, int levels, int64_t N, uint64_t seed,
                    infer::PackedPrecision prec) {
  INFO(name << " " << o.image_size << "x" << o.image_size << "x" << o.in_channels << " levels " << levels
             << " N " << N << " precision " << infer::packed_precision_name(prec));
  auto model = testing::rounded_model(name, o, levels, seed);
  std::string why;
  auto runner = infer::PackedRunner::build(*model, Device::CPU, &why, prec);
  INFO("refused: " << why);
  REQUIRE(runner);
  Tensor x = testing::random_tensor({N, o.in_channels, o.image_size, o.image_size}, seed + 999);
  Tensor want = testing::float_logits(*model, x);
  Tensor got = runner->logits(x);
  REQUIRE(got.shape() == want.shape());
  const Tolerance& tol = tolerance(prec);
  testing::LogitAgreement a = testing::compare_logits(got, want, tol.margin);
  INFO("worst |diff| / max|logit| " << a.worst_rel_diff << " (row " << a.worst_row << "), top-1 agree "
                                     << a.top1_agree << "/" << a.rows << ", clear flips " << a.clear_disagree
                                     << "; " << runner->summary());
  CHECK(a.worst_rel_diff <= tol.logit);
  CHECK(a.agree_frac() >= 0.99);
  CHECK(a.clear_disagree == 0);
  return a.worst_rel_diff;
}

// Both precisions on the same net; split must be the tighter one (reported, not bounded).
void check_both(const std::string& name, models::ModelOptions o, int levels, int64_t N, uint64_t seed) {
  const double split = check_runner(name, o, levels, N, seed, infer::PackedPrecision::SplitBF16);
  const double bf16 = check_runner(name, o, levels, N, seed, infer::PackedPrecision::BF16);
  WARN(name << " levels " << levels << ": worst |packed - float| / max|logit|: split-bf16 " << split << ", bf16 "
            << bf16);
  CHECK(split < bf16);
}

}  // namespace

TEST_CASE("fold_batchnorm matches BN(d + b) = scale d + shift") {
  nn::BatchNorm2d bn(2);
  bn.running_mean().copy_from(Tensor::from_vector({0.5f, -2.f}, {2}));
  bn.running_var().copy_from(Tensor::from_vector({3.f, 0.25f}, {2}));
  const double e = 1e-5;
  infer::FoldedAffine f = infer::fold_batchnorm(Tensor::from_vector({1.f, -1.f}, {2}), &bn, 2);
  const std::vector<float> sc = f.scale.to_vector(), sh = f.shift.to_vector();
  CHECK(sc[0] == Approx(1.0 / std::sqrt(3.0 + e)).epsilon(1e-7));
  CHECK(sc[1] == Approx(1.0 / std::sqrt(0.25 + e)).epsilon(1e-7));
  CHECK(sh[0] == Approx((1.0 - 0.5) / std::sqrt(3.0 + e)).epsilon(1e-7));
  CHECK(sh[1] == Approx((-1.0 + 2.0) / std::sqrt(0.25 + e)).epsilon(1e-7));
  // No bias: shift = -mean · scale. No BN: scale undefined (1), shift = bias.
  infer::FoldedAffine g = infer::fold_batchnorm(Tensor(), &bn, 2);
  CHECK(g.shift.to_vector()[1] == Approx(2.0 / std::sqrt(0.25 + e)).epsilon(1e-7));
  infer::FoldedAffine h = infer::fold_batchnorm(Tensor::from_vector({1.f, -1.f}, {2}), nullptr, 2);
  CHECK(!h.scale.defined());
  CHECK(h.shift.to_vector() == std::vector<float>{1.f, -1.f});
}

TEST_CASE("packed_infer references: layout round trip and max pool equal the NCHW float ops") {
  for (auto [k, s, p] : {std::tuple<int, int, int>{2, 2, 0}, {3, 2, 1}, {3, 1, 1}, {2, 1, 0}}) {
    const int N = 2, C = 5, H = 7, W = 6;
    INFO("k " << k << " s " << s << " p " << p);
    Tensor x = packed::to_f32(packed::to_bf16(testing::random_tensor({N, C, H, W}, 7 + k + s + p)));  // bf16-exact
    Tensor nhwc = Tensor::empty({N, H, W, C}, DType::BF16);
    kernels::reference::nchw_f32_to_nhwc_bf16(x.data<float>(), nhwc.data<uint16_t>(), N, C, H * W);
    Tensor back = Tensor::empty({N, C, H, W}, DType::BF16);
    kernels::reference::nhwc_to_nchw_bf16(nhwc.data<uint16_t>(), back.data<uint16_t>(), N, H * W, C);
    testing::require_close(packed::to_f32(back), x, 0.f, 0.f, "NCHW -> NHWC -> NCHW");

    const int OH = ops::window_output_size(H, k, s, p), OW = ops::window_output_size(W, k, s, p);
    Tensor y = Tensor::empty({N, OH, OW, C}, DType::BF16);
    kernels::reference::maxpool_nhwc_bf16(nhwc.data<uint16_t>(), y.data<uint16_t>(), N, H, W, C, k, s, p);
    Tensor want = ops::max_pool2d_forward(x, k, s, p).out;
    REQUIRE(want.shape() == Shape({N, C, OH, OW}));
    testing::require_close(packed::nhwc_to_nchw(packed::to_f32(y)), want, 0.f, 0.f, "max pool");
  }
}

TEST_CASE("split_bf16_nhwc reference: hi is bf16(a), lo is bf16(a - hi), hi + lo within 2^-16 of a") {
  const int64_t P = 3;
  const int C = 5;
  // bf16 keeps 8 significant bits: its ulp at 1 is 2^-7. 1 + 2^-9 + 2^-13 is below the halfway
  // point: hi = 1, lo = 2^-9 + 2^-13 exactly.
  const float a0 = 1.f + std::ldexp(1.f, -9) + std::ldexp(1.f, -13);
  // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even -> hi = 1, lo = 2^-8.
  const float a1 = 1.f + std::ldexp(1.f, -8);
  Tensor x = testing::random_tensor({P, C}, 77, -1000.f, 1000.f);
  x.data<float>()[0] = a0;
  x.data<float>()[1] = a1;
  x.data<float>()[2] = -3.f;  // exact in bf16: lo = 0
  x.data<float>()[3] = INFINITY;  // lo = 0, not NaN
  Tensor y = Tensor::empty({P, 2 * C}, DType::BF16);
  kernels::reference::split_bf16_nhwc(x.data<float>(), y.data<uint16_t>(), P, C);
  const uint16_t* q = y.data<uint16_t>();
  auto f = [](uint16_t b) { return packed::bf16_to_float(b); };
  CHECK(f(q[0]) == 1.f);
  CHECK(f(q[C]) == std::ldexp(1.f, -9) + std::ldexp(1.f, -13));
  CHECK(f(q[1]) == 1.f);
  CHECK(f(q[C + 1]) == std::ldexp(1.f, -8));
  CHECK(f(q[2]) == -3.f);
  CHECK(f(q[C + 2]) == 0.f);
  CHECK(f(q[3]) == INFINITY);
  CHECK(f(q[C + 3]) == 0.f);
  for (int64_t p = 0; p < P; ++p)
    for (int c = 0; c < C; ++c) {
      const float a = x.data<float>()[p * C + c];
      if (!std::isfinite(a)) continue;
      const uint16_t hi = q[p * 2 * C + c], lo = q[p * 2 * C + C + c];
      INFO("p " << p << " c " << c << " a " << a);
      CHECK(hi == packed::float_to_bf16(a));
      CHECK(lo == packed::float_to_bf16(a - f(hi)));
      CHECK(std::fabs(static_cast<double>(f(hi)) + f(lo) - a) <= std::ldexp(std::fabs(a), -16));
    }
}

TEST_CASE("PackedRunner on the CPU agrees with the float engine: smallcnn") {
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 1, o.image_size = 28;  // Fashion-MNIST shape: 28 -> 14 -> 7 -> 3
  check_both("smallcnn", o, 2, 64, 11);
  o.in_channels = 3, o.image_size = 17;
  check_both("smallcnn", o, 3, 16, 12);  // ternary, odd size
}

TEST_CASE("PackedRunner on the CPU agrees with the float engine: ResNet-18 (CIFAR variant)") {
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 3, o.image_size = 8;  // CIFAR structure, small maps for the CPU
  check_both("resnet18", o, 2, 8, 21);
}

TEST_CASE("PackedRunner on the CPU agrees with the float engine: VGG-16 (conv bias, BN on the classifier)") {
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 3, o.image_size = 32;  // the smallest size five max-pools allow
  check_both("vgg16", o, 2, 2, 31);
}

TEST_CASE("mdq-infer's chain: export, load_packed_model, PackedRunner equals the float engine") {
  app::TrainOptions o;
  o.model = "smallcnn";
  o.dataset = "fashion-mnist";
  const data::DatasetInfo info = data::standard_info("fashion-mnist");
  auto rounded = app::build_model(o, info);
  testing::round_randomly(*rounded, 2, 41);
  const std::string path = "/tmp/mdq-test-packed-infer.mdqpack";
  app::save_packed_model(path, o, *rounded);
  auto model = app::build_model(app::read_packed_options(path), info);
  app::load_packed_model(path, *model);
  model->eval();
  std::string why;
  auto runner = infer::PackedRunner::build(*model, Device::CPU, &why);  // the default: split-bf16
  INFO("refused: " << why);
  REQUIRE(runner);
  CHECK(runner->precision() == infer::PackedPrecision::SplitBF16);
  CHECK(runner->summary() == "3 binary convs, 1 binary linear");
  Tensor x = testing::random_tensor({32, 1, 28, 28}, 42);
  testing::LogitAgreement a =
      testing::compare_logits(runner->logits(x), testing::float_logits(*rounded, x), kSplit.margin);
  INFO("worst " << a.worst_rel_diff << " agree " << a.top1_agree << "/" << a.rows);
  CHECK(a.worst_rel_diff <= kSplit.logit);
  CHECK(a.agree_frac() >= 0.99);
  CHECK(a.clear_disagree == 0);
}

TEST_CASE("PackedRunner refuses what the packed kernels do not cover, saying why") {
  models::ModelOptions o;
  o.image_size = 32;
  std::string why;
  auto mb = testing::rounded_model("mobilenetv2", o, 2, 5);
  CHECK(!infer::PackedRunner::build(*mb, Device::CPU, &why));
  INFO(why);
  CHECK((why.find("grouped") != std::string::npos || why.find("ReLU6") != std::string::npos));
  o.act_bits = 1;
  auto bin = testing::rounded_model("smallcnn", o, 2, 6);
  CHECK(!infer::PackedRunner::build(*bin, Device::CPU, &why));
  CHECK(why.find("binary activation") != std::string::npos);
  o.act_bits = 32;
  auto fl = models::make_model("smallcnn", o);  // Xavier init: float weights
  CHECK(!infer::PackedRunner::build(*fl, Device::CPU, &why));
  CHECK(why.find("not all") != std::string::npos);
}

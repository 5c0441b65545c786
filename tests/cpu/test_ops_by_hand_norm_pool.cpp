// Batch norm, activations and pooling on the CPU: hand-computed values, the formulas' properties,
// edge cases (kinks, ties, padding) and error messages. Random shapes, finite differences and the
// other backends are the op table's (tests/ops/op_table.h, tests/cpu/test_ops.cpp).
#include <cmath>
#include <numeric>

#include "engine/nn/activation.h"
#include "engine/nn/batchnorm.h"
#include "engine/nn/functional.h"
#include "engine/nn/pooling.h"
#include "engine/ops/batchnorm.h"
#include "engine/ops/pooling.h"
#include "tests/support/testing.h"

using namespace mdq;

namespace {

std::vector<float> plane_1_to_16() {
  std::vector<float> v(16);
  std::iota(v.begin(), v.end(), 1.f);  // row r: 4r+1 .. 4r+4
  return v;
}

struct ChannelStats {
  std::vector<double> mean, var;  // var biased
};

ChannelStats channel_stats(const Tensor& x) {
  const int64_t n = x.dim(0), c = x.dim(1), hw = x.numel() / (n * c);
  std::vector<float> v = x.to_vector();
  ChannelStats s{std::vector<double>(c, 0.0), std::vector<double>(c, 0.0)};
  for (int64_t ch = 0; ch < c; ++ch) {
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < hw; ++k) s.mean[ch] += v[(i * c + ch) * hw + k];
    s.mean[ch] /= n * hw;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < hw; ++k) s.var[ch] += std::pow(v[(i * c + ch) * hw + k] - s.mean[ch], 2);
    s.var[ch] /= n * hw;
  }
  return s;
}

}  // namespace

// ---------------------------------------------------------------- activations

TEST_CASE("relu, relu6 and sign forward on hand-picked values") {
  Var x(Tensor::from_vector({-2.f, -0.5f, 0.f, 0.5f, 3.f, 7.f}, {6}));
  REQUIRE(nn::relu(x).value().to_vector() == std::vector<float>{0, 0, 0, 0.5f, 3, 7});
  REQUIRE(nn::relu6(x).value().to_vector() == std::vector<float>{0, 0, 0, 0.5f, 3, 6});
  REQUIRE(nn::sign_ste(x).value().to_vector() == std::vector<float>{-1, -1, 1, 1, 1, 1});
  // -0.0 is zero: sign(-0) = +1 as well.
  REQUIRE(nn::sign_ste(Var(Tensor::from_vector({-0.f}, {1}))).value().item() == 1.f);
}

TEST_CASE("relu and relu6 have subgradient 0 at their kinks") {
  Var x(Tensor::from_vector({0.f, 6.f}, {2}), true);
  backward(nn::sum(nn::relu(x)));
  REQUIRE(x.grad().to_vector() == std::vector<float>{0, 1});
  x.zero_grad();
  backward(nn::sum(nn::relu6(x)));
  REQUIRE(x.grad().to_vector() == std::vector<float>{0, 0});
}

TEST_CASE("sign_ste passes the gradient straight through where |x| <= 1 and blocks it elsewhere") {
  Var x(Tensor::from_vector({-2.f, -1.f, -0.5f, 0.f, 0.5f, 1.f, 1.5f}, {7}), true);
  Var g(Tensor::from_vector({1, 2, 3, 4, 5, 6, 7}, {7}));
  backward(nn::sum(nn::mul(nn::sign_ste(x), g)));
  REQUIRE(x.grad().to_vector() == std::vector<float>{0, 2, 3, 4, 5, 6, 0});
}

// ---------------------------------------------------------------- pooling

TEST_CASE("max_pool2d forward: stride 2, padding never wins, odd sizes") {
  Tensor x = Tensor::from_vector(plane_1_to_16(), {1, 1, 4, 4});
  REQUIRE(nn::max_pool2d(Var(x), 2, 2, 0).value().to_vector() == std::vector<float>{6, 8, 14, 16});

  // All negative: a padded zero would win if padding took part. k3 s2 p1 on 4x4 -> 2x2.
  Tensor neg = nn::scale(Var(x), -1.f).value();
  ops::MaxPool2dResult r = ops::max_pool2d_forward(neg, 3, 2, 1);
  REQUIRE(r.out.to_vector() == std::vector<float>{-1, -2, -5, -6});
  REQUIRE(r.argmax.to_vector_i32() == std::vector<int32_t>{0, 1, 4, 5});

  // 5x5 (values 1..25), k3 s2 p0 -> 2x2; ties go to the first element in window order.
  std::vector<float> v(25);
  std::iota(v.begin(), v.end(), 1.f);
  REQUIRE(nn::max_pool2d(Var(Tensor::from_vector(v, {1, 1, 5, 5})), 3, 2, 0).value().to_vector() ==
          std::vector<float>{13, 15, 23, 25});
  ops::MaxPool2dResult tie = ops::max_pool2d_forward(Tensor::full({1, 1, 2, 2}, 1.f), 2, 2, 0);
  REQUIRE(tie.argmax.to_vector_i32() == std::vector<int32_t>{0});
  REQUIRE(ops::pool_output_size(32, 3, 2, 1) == 16);
}

TEST_CASE("max_pool2d backward sums the grads of every window an element wins") {
  // 3x3, k3 s1 p1 -> 3x3 outputs; every window holds the centre, the maximum.
  Var x(Tensor::from_vector({1, 2, 3, 4, 10, 5, 6, 7, 8}, {1, 1, 3, 3}), true);
  Var g(Tensor::from_vector({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3}));
  backward(nn::sum(nn::mul(nn::max_pool2d(x, 3, 1, 1), g)));
  REQUIRE(x.grad().to_vector() == std::vector<float>{0, 0, 0, 0, 45, 0, 0, 0, 0});
}

TEST_CASE("avg_pool2d forward counts padded zeros in the divisor") {
  Tensor x = Tensor::from_vector(plane_1_to_16(), {1, 1, 4, 4});
  REQUIRE(nn::avg_pool2d(Var(x), 2, 2, 0).value().to_vector() == std::vector<float>{3.5f, 5.5f, 11.5f, 13.5f});
  // k3 s2 p1: windows hold {1,2,5,6}, {2,3,4,6,7,8}, {5,6,9,10,13,14}, {6,7,8,10,11,12,14,15,16}; /9 always.
  testing::require_close(nn::avg_pool2d(Var(x), 3, 2, 1).value(),
                         Tensor::from_vector({14.f / 9, 30.f / 9, 57.f / 9, 99.f / 9}, {1, 1, 2, 2}), 1e-6f, 0,
                         "avg_pool2d k3 s2 p1");
}

TEST_CASE("global_avg_pool averages each plane and spreads the grad evenly") {
  std::vector<float> v(24);
  std::iota(v.begin(), v.end(), 0.f);  // plane p holds 4p .. 4p+3
  Tensor out = nn::global_avg_pool(Var(Tensor::from_vector(v, {2, 3, 2, 2}))).value();
  REQUIRE(out.shape() == Shape{2, 3});
  REQUIRE(out.to_vector() == std::vector<float>{1.5f, 5.5f, 9.5f, 13.5f, 17.5f, 21.5f});
  Tensor g = ops::global_avg_pool_backward(Tensor::from_vector({4, 8}, {1, 2}), {1, 2, 2, 2});
  REQUIRE(g.to_vector() == std::vector<float>{1, 1, 1, 1, 2, 2, 2, 2});
}

TEST_CASE("pooling rejects bad geometry with a message naming the op and the input") {
  Tensor x = Tensor::zeros({1, 1, 4, 4});
  REQUIRE_THROWS_WITH(ops::max_pool2d_forward(x, 2, 2, 2), Catch::Contains("max_pool2d") && Catch::Contains("padding"));
  REQUIRE_THROWS_WITH(ops::avg_pool2d_forward(Tensor::zeros({4, 4}), 2, 2, 0),
                      Catch::Contains("avg_pool2d") && Catch::Contains("[4, 4]"));
  REQUIRE_THROWS_WITH(ops::max_pool2d_forward(x, 7, 1, 1), Catch::Contains("larger than the padded input"));
}

// ---------------------------------------------------------------- batch norm

TEST_CASE("batch_norm training normalises each channel and updates running stats by the formula") {
  for (const Shape& shape : {Shape{4, 3, 5, 5}, Shape{8, 3}}) {
    INFO("x " << shape_str(shape));
    Tensor x = Tensor::normal(shape, 2.f, 3.f, 11);
    Tensor rm = Tensor::from_vector({0.5f, -1.f, 2.f}, {3}), rv = Tensor::from_vector({2.f, 0.5f, 1.f}, {3});
    const std::vector<float> rm0 = rm.to_vector(), rv0 = rv.to_vector();
    Var out = nn::batch_norm(Var(x), Var(), Var(), rm, rv, true, 0.1f, 1e-5f);
    REQUIRE(out.shape() == shape);
    const ChannelStats in = channel_stats(x), normed = channel_stats(out.value());
    const double m = static_cast<double>(x.numel() / 3);
    for (int c = 0; c < 3; ++c) {
      CHECK(std::fabs(normed.mean[c]) < 1e-5);
      CHECK(normed.var[c] == Approx(in.var[c] / (in.var[c] + 1e-5)).epsilon(1e-5));
      CHECK(rm.to_vector()[c] == Approx(0.9 * rm0[c] + 0.1 * in.mean[c]).epsilon(1e-6));
      CHECK(rv.to_vector()[c] == Approx(0.9 * rv0[c] + 0.1 * in.var[c] * m / (m - 1)).epsilon(1e-6));
    }
  }
}

TEST_CASE("batch_norm training with affine parameters shifts to bias and scales to |weight|") {
  Tensor x = Tensor::normal({6, 3, 3, 4}, -1.f, 2.f, 12);
  Tensor rm = Tensor::zeros({3}), rv = Tensor::full({3}, 1.f);
  Var w(Tensor::from_vector({2.f, -1.f, 0.5f}, {3})), b(Tensor::from_vector({1.f, 0.f, -3.f}, {3}));
  const ChannelStats s = channel_stats(nn::batch_norm(Var(x), w, b, rm, rv, true, 0.1f, 0.f).value());
  const double want_mean[] = {1, 0, -3}, want_var[] = {4, 1, 0.25};
  for (int c = 0; c < 3; ++c) {
    CHECK(s.mean[c] == Approx(want_mean[c]).margin(1e-5));
    CHECK(s.var[c] == Approx(want_var[c]).epsilon(1e-5));
  }
}

TEST_CASE("batch_norm eval uses the running stats, leaves them alone, and scales the grad") {
  Var x(Tensor::from_vector({1, 2, 3, 4}, {2, 2}), true);  // channel 0: {1, 3}, channel 1: {2, 4}
  Tensor rm = Tensor::from_vector({1.f, 2.f}, {2}), rv = Tensor::from_vector({4.f, 0.25f}, {2});
  Var w(Tensor::from_vector({2.f, 3.f}, {2}), true), b(Tensor::from_vector({1.f, -1.f}, {2}), true);
  REQUIRE(nn::batch_norm(x, Var(), Var(), rm, rv, false, 0.1f, 0.f).value().to_vector() ==
          std::vector<float>{0, 0, 1, 4});
  Var y = nn::batch_norm(x, w, b, rm, rv, false, 0.1f, 0.f);
  REQUIRE(y.value().to_vector() == std::vector<float>{1, -1, 3, 11});
  REQUIRE(rm.to_vector() == std::vector<float>{1, 2});
  REQUIRE(rv.to_vector() == std::vector<float>{4, 0.25f});
  x.zero_grad();
  backward(nn::sum(y));
  REQUIRE(x.grad().to_vector() == std::vector<float>{1, 6, 1, 6});  // weight * invstd
  REQUIRE(w.grad().to_vector() == std::vector<float>{1, 4});        // sum of xhat
  REQUIRE(b.grad().to_vector() == std::vector<float>{2, 2});        // sum of g
}

TEST_CASE("batch_norm checks its operands and needs more than one value per channel to train") {
  Tensor rm = Tensor::zeros({3}), rv = Tensor::full({3}, 1.f);
  REQUIRE_THROWS_WITH(nn::batch_norm(Var(Tensor::zeros({1, 3})), Var(), Var(), rm, rv, true, 0.1f, 1e-5f),
                      Catch::Contains("more than one value per channel"));
  REQUIRE_THROWS_WITH(
      nn::batch_norm(Var(Tensor::zeros({2, 4, 2, 2})), Var(), Var(), rm, rv, true, 0.1f, 1e-5f),
      Catch::Contains("running_mean") && Catch::Contains("f32[3]@cpu") && Catch::Contains("f32[2, 4, 2, 2]@cpu"));
}

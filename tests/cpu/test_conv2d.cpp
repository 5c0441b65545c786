// 2-D convolution on the CPU: hand-computed cases, a naive bounds-checked reference on random
// shapes, backward of x, w and bias by finite differences, operand errors, the Conv2d layer.
#include <algorithm>
#include <cmath>

#include "engine/nn/conv2d.h"
#include "engine/nn/functional.h"
#include "engine/ops/conv2d.h"
#include "tests/support/testing.h"

using namespace mdq;
using ops::Conv2dParams;

namespace {

Tensor iota(const Shape& shape) {  // 1, 2, 3, ...
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i + 1);
  return Tensor::from_vector(v, shape);
}

// The definition, written as plainly as possible: every output, every tap, bounds checked.
Tensor naive_conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p) {
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const int64_t O = w.dim(0), Cg = w.dim(1), KH = w.dim(2), KW = w.dim(3);
  const int64_t OH = (H + 2 * p.padding - KH) / p.stride + 1, OW = (W + 2 * p.padding - KW) / p.stride + 1;
  Tensor y = Tensor::zeros({N, O, OH, OW});
  const float *px = x.data<float>(), *pw = w.data<float>();
  float* py = y.data<float>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t i = 0; i < OH; ++i)
        for (int64_t j = 0; j < OW; ++j) {
          double acc = bias.defined() ? bias.data<float>()[o] : 0.0;
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t kh = 0; kh < KH; ++kh)
              for (int64_t kw = 0; kw < KW; ++kw) {
                const int64_t ih = i * p.stride - p.padding + kh, iw = j * p.stride - p.padding + kw;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                const int64_t ci = (o / (O / p.groups)) * Cg + c;
                acc += double(pw[((o * Cg + c) * KH + kh) * KW + kw]) * px[((n * C + ci) * H + ih) * W + iw];
              }
          py[((n * O + o) * OH + i) * OW + j] = static_cast<float>(acc);
        }
  (void)C;
  return y;
}

struct Case {
  int64_t N, C, H, W, O, KH, KW;
  Conv2dParams p;
};

}  // namespace

TEST_CASE("conv2d forward: hand-computed cases") {
  SECTION("2x2 kernel, no padding: y = x[i,j] - x[i+1,j+1], plus bias") {
    Tensor w = Tensor::from_vector({1, 0, 0, -1}, {1, 1, 2, 2});
    Tensor y = ops::conv2d_forward(iota({1, 1, 3, 3}), w, Tensor(), {});
    REQUIRE(y.shape() == Shape{1, 1, 2, 2});
    REQUIRE(y.to_vector() == std::vector<float>{-4, -4, -4, -4});
    Tensor yb = ops::conv2d_forward(iota({1, 1, 3, 3}), w, Tensor::from_vector({0.5f}, {1}), {});
    REQUIRE(yb.to_vector() == std::vector<float>{-3.5f, -3.5f, -3.5f, -3.5f});
  }
  SECTION("3x3 box filter, padding 1: neighbourhood sums") {
    Tensor y = ops::conv2d_forward(iota({1, 1, 3, 3}), Tensor::full({1, 1, 3, 3}, 1.f), Tensor(), {1, 1, 1});
    REQUIRE(y.to_vector() == std::vector<float>{12, 21, 16, 27, 45, 33, 24, 39, 28});
  }
  SECTION("3x3 box filter, padding 1, stride 2: the corners") {
    Tensor y = ops::conv2d_forward(iota({1, 1, 3, 3}), Tensor::full({1, 1, 3, 3}, 1.f), Tensor(), {2, 1, 1});
    REQUIRE(y.shape() == Shape{1, 1, 2, 2});
    REQUIRE(y.to_vector() == std::vector<float>{12, 16, 24, 28});
  }
  SECTION("1x1 kernel, stride 2 on 4x4: every other pixel, doubled") {
    Tensor y = ops::conv2d_forward(iota({1, 1, 4, 4}), Tensor::full({1, 1, 1, 1}, 2.f), Tensor(), {2, 0, 1});
    REQUIRE(y.to_vector() == std::vector<float>{2, 6, 18, 22});
  }
  SECTION("groups 2: each output sees only its half of the channels") {
    Tensor w = Tensor::from_vector({1, 10, 100, 1000}, {2, 2, 1, 1});
    Tensor y = ops::conv2d_forward(iota({1, 4, 1, 1}), w, Tensor(), {1, 0, 2});
    REQUIRE(y.to_vector() == std::vector<float>{21, 4300});
  }
  SECTION("depthwise: one filter per channel") {
    Tensor w = Tensor::from_vector({1, 1, 1, 1, 1, 0, 0, 1}, {2, 1, 2, 2});
    Tensor y = ops::conv2d_forward(iota({1, 2, 2, 2}), w, Tensor(), {1, 0, 2});
    REQUIRE(y.to_vector() == std::vector<float>{10, 13});
  }
  SECTION("bias grad sums over batch and space") {
    Tensor db = ops::conv2d_backward_bias(iota({2, 2, 1, 2}));  // n0: [1 2][3 4], n1: [5 6][7 8]
    REQUIRE(db.to_vector() == std::vector<float>{1 + 2 + 5 + 6, 3 + 4 + 7 + 8});
  }
}

TEST_CASE("conv2d forward matches the naive definition on random shapes") {
  const std::vector<Case> cases = {
      {2, 3, 7, 6, 4, 3, 3, {1, 1, 1}}, {1, 4, 9, 8, 6, 3, 3, {2, 1, 2}}, {3, 5, 6, 7, 5, 3, 3, {1, 0, 5}},
      {2, 2, 8, 5, 3, 3, 2, {3, 2, 1}}, {1, 6, 5, 5, 4, 1, 1, {2, 0, 2}}, {2, 3, 4, 4, 3, 5, 5, {1, 2, 1}},
  };
  uint64_t seed = 1;
  for (const Case& c : cases) {
    Tensor x = testing::random_tensor({c.N, c.C, c.H, c.W}, seed++);
    Tensor w = testing::random_tensor({c.O, c.C / c.p.groups, c.KH, c.KW}, seed++);
    Tensor b = testing::random_tensor({c.O}, seed++);
    const std::string what = "x " + x.describe() + " w " + w.describe() + " stride " + std::to_string(c.p.stride) +
                             " padding " + std::to_string(c.p.padding) + " groups " + std::to_string(c.p.groups);
    testing::require_close(ops::conv2d_forward(x, w, b, c.p), naive_conv2d(x, w, b, c.p), 1e-5f, 1e-5f, what);
    REQUIRE(ops::conv2d_output_shape(x.shape(), w.shape(), c.p) == naive_conv2d(x, w, b, c.p).shape());
  }
}

TEST_CASE("conv2d backward of x, w and bias matches finite differences") {
  const std::vector<Case> cases = {
      {2, 3, 5, 4, 4, 3, 3, {1, 1, 1}},  // padding
      {1, 4, 6, 5, 2, 3, 3, {2, 1, 2}},  // stride 2, groups 2, odd sizes
      {2, 3, 5, 5, 3, 3, 3, {1, 0, 3}},  // depthwise
      {1, 2, 7, 5, 3, 2, 2, {2, 0, 1}},  // stride 2 drops the last row and column
  };
  uint64_t seed = 100;
  for (const Case& c : cases) {
    INFO("x [" << c.N << ", " << c.C << ", " << c.H << ", " << c.W << "] O " << c.O << " kernel " << c.KH << "x"
               << c.KW << " stride " << c.p.stride << " padding " << c.p.padding << " groups " << c.p.groups);
    Tensor x = testing::random_tensor({c.N, c.C, c.H, c.W}, seed++);
    Tensor w = testing::random_tensor({c.O, c.C / c.p.groups, c.KH, c.KW}, seed++);
    Tensor b = testing::random_tensor({c.O}, seed++);
    // Weighting the output by a fixed random r makes every element's gradient distinct.
    Var r(testing::random_tensor(ops::conv2d_output_shape(x.shape(), w.shape(), c.p), seed++));
    const Conv2dParams p = c.p;
    testing::check_gradients([&](std::vector<Var>& v) { return nn::sum(nn::mul(nn::conv2d(v[0], v[1], v[2], p), r)); },
                             {x, w, b});
  }
}

TEST_CASE("conv2d without bias records grads for x and w only") {
  Var x(testing::random_tensor({1, 2, 4, 4}, 7), true), w(testing::random_tensor({3, 2, 3, 3}, 8), true);
  backward(nn::sum(nn::conv2d(x, w, Var(), {1, 1, 1})));
  REQUIRE(x.has_grad());
  REQUIRE(w.has_grad());
  REQUIRE(x.grad().shape() == x.shape());
}

TEST_CASE("conv2d operand errors name the op and the operands") {
  Tensor x = Tensor::zeros({1, 4, 5, 5});
  REQUIRE_THROWS_WITH(ops::conv2d_forward(x, Tensor::zeros({2, 3, 3, 3}), Tensor(), {}),
                      Catch::Contains("conv2d_forward") && Catch::Contains("channel mismatch") &&
                          Catch::Contains("f32[1, 4, 5, 5]@cpu") && Catch::Contains("f32[2, 3, 3, 3]@cpu"));
  REQUIRE_THROWS_WITH(ops::conv2d_forward(x, Tensor::zeros({3, 1, 3, 3}), Tensor(), {1, 0, 3}),
                      Catch::Contains("groups 3 does not divide the 4 input channels"));
  REQUIRE_THROWS_WITH(ops::conv2d_forward(x, Tensor::zeros({2, 4, 3, 3}), Tensor::zeros({3}), {}),
                      Catch::Contains("bias f32[3]@cpu must be [2]"));
  REQUIRE_THROWS_WITH(ops::conv2d_forward(Tensor::zeros({4, 5, 5}), Tensor::zeros({2, 4, 3, 3}), Tensor(), {}),
                      Catch::Contains("must be 4-D"));
  REQUIRE_THROWS_WITH(ops::conv2d_forward(x, Tensor::zeros({2, 4, 7, 7}), Tensor(), {}),
                      Catch::Contains("larger than the padded input"));
  REQUIRE_THROWS_WITH(ops::conv2d_backward_input(Tensor::zeros({1, 2, 4, 4}), Tensor::zeros({2, 4, 3, 3}), x.shape(), {}),
                      Catch::Contains("conv2d_backward_input") && Catch::Contains("grad_out f32[1, 2, 4, 4]@cpu") &&
                          Catch::Contains("[1, 2, 3, 3]"));
}

TEST_CASE("Conv2d layer: parameters, Xavier-uniform init, forward") {
  nn::Conv2d conv(4, 6, 3, 2, 1, 2, true, 42);
  auto params = conv.parameters();
  REQUIRE(params.size() == 2);
  REQUIRE(params[0].name == "weight");
  REQUIRE(params[0].kind == nn::ParamKind::Weight);
  REQUIRE(params[0].fan_in == 2 * 9);
  REQUIRE(params[0].fan_out == 6 * 9);
  REQUIRE(params[1].name == "bias");
  REQUIRE(params[1].kind == nn::ParamKind::Bias);
  REQUIRE(conv.weight().shape() == Shape{6, 2, 3, 3});
  REQUIRE(conv.bias().value().to_vector() == std::vector<float>(6, 0.f));
  const float bound = std::sqrt(6.f / (18 + 54));
  float lo = 1, hi = -1;
  for (float v : conv.weight().value().to_vector()) lo = std::min(lo, v), hi = std::max(hi, v);
  REQUIRE(lo >= -bound);
  REQUIRE(hi <= bound);
  REQUIRE(hi - lo > bound);  // spread over the range, not stuck at one value
  REQUIRE(conv.weight().value().to_vector() == nn::Conv2d(4, 6, 3, 2, 1, 2, true, 42).weight().value().to_vector());

  nn::Conv2d plain(3, 5, 3);
  REQUIRE(plain.parameters().size() == 1);
  REQUIRE_FALSE(plain.bias().defined());

  Tensor x = testing::random_tensor({2, 4, 7, 7}, 9);
  Var y = conv(Var(x));
  REQUIRE(y.shape() == Shape{2, 6, 4, 4});
  testing::require_close(y.value(), naive_conv2d(x, conv.weight().value(), conv.bias().value(), conv.params()), 1e-5f,
                         1e-5f, "Conv2d forward");
  REQUIRE_THROWS_WITH(nn::Conv2d(4, 6, 3, 1, 0, 4), Catch::Contains("groups 4 must divide"));
}

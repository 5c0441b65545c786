// The layer classes on the CPU: their parameters and buffers, initialisation, train/eval modes,
// composition in a Sequential, and flatten. The math under them is the op table's.
#include <algorithm>
#include <cmath>

#include "engine/nn/activation.h"
#include "engine/nn/batchnorm.h"
#include "engine/nn/conv2d.h"
#include "engine/nn/functional.h"
#include "engine/nn/linear.h"
#include "engine/nn/pooling.h"
#include "engine/nn/reshape.h"
#include "engine/ops/conv2d.h"
#include "tests/support/grad_sum_check.h"
#include "tests/support/testing.h"

using namespace mdq;

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
  // The layer's forward is the op's (checked against the definition by the op table).
  REQUIRE(y.value().to_vector() ==
          ops::conv2d_forward(x, conv.weight().value(), conv.bias().value(), conv.params()).to_vector());
  REQUIRE_THROWS_WITH(nn::Conv2d(4, 6, 3, 1, 0, 4), Catch::Contains("groups 4 must divide"));
}

TEST_CASE("Linear registers Xavier-initialised weight and zero bias") {
  nn::Linear fc(8, 4, true, 7);
  auto params = fc.parameters();
  REQUIRE(params.size() == 2);
  REQUIRE(params[0].name == "weight");
  REQUIRE(params[0].kind == nn::ParamKind::Weight);
  REQUIRE(params[0].fan_in == 8);
  REQUIRE(params[0].fan_out == 4);
  REQUIRE(params[1].name == "bias");
  REQUIRE(params[1].kind == nn::ParamKind::Bias);
  REQUIRE(fc.weight().shape() == Shape{4, 8});
  REQUIRE(fc.bias().value().to_vector() == std::vector<float>(4, 0.f));
  const float bound = std::sqrt(6.f / 12.f);
  float biggest = 0;
  for (float w : fc.weight().value().to_vector()) biggest = std::max(biggest, std::fabs(w));
  REQUIRE(biggest <= bound);
  REQUIRE(biggest > 0.5f * bound);
  REQUIRE(fc(Var(testing::random_tensor({3, 8}, 1))).shape() == Shape{3, 4});
  nn::Linear no_bias(8, 4, false);
  REQUIRE(no_bias.parameters().size() == 1);
  REQUIRE_FALSE(no_bias.bias().defined());
}

TEST_CASE("BatchNorm2d registers its buffers and, when affine, its parameters") {
  nn::BatchNorm2d plain(3);
  REQUIRE(plain.parameters().empty());
  auto buffers = plain.buffers();
  REQUIRE(buffers.size() == 2);
  REQUIRE(buffers[0].first == "running_mean");
  REQUIRE(buffers[0].second->to_vector() == std::vector<float>{0, 0, 0});
  REQUIRE(buffers[1].first == "running_var");
  REQUIRE(buffers[1].second->to_vector() == std::vector<float>{1, 1, 1});

  nn::BatchNorm2d affine(2, true);
  auto params = affine.parameters();
  REQUIRE(params.size() == 2);
  REQUIRE(params[0].name == "weight");
  REQUIRE(params[0].kind == nn::ParamKind::Weight);
  REQUIRE(params[0].var.value().to_vector() == std::vector<float>{1, 1});
  REQUIRE((params[0].fan_in == 1 && params[0].fan_out == 1));
  REQUIRE(params[1].name == "bias");
  REQUIRE(params[1].kind == nn::ParamKind::Bias);
  REQUIRE(params[1].var.value().to_vector() == std::vector<float>{0, 0});
}

TEST_CASE("BatchNorm2d follows train/eval, takes [N, C, H, W] and [N, C], and rejects other channel counts") {
  nn::BatchNorm2d bn(3);
  Tensor x = Tensor::normal({4, 3, 2, 2}, 1.f, 2.f, 20);
  bn(Var(x));
  const std::vector<float> after_train = bn.running_mean().to_vector();
  REQUIRE(after_train != std::vector<float>{0, 0, 0});
  bn(Var(Tensor::normal({5, 3}, 0.f, 1.f, 21)));
  bn.eval();
  const std::vector<float> rm = bn.running_mean().to_vector(), rv = bn.running_var().to_vector();
  Tensor y = bn(Var(x)).value();
  REQUIRE(bn.running_mean().to_vector() == rm);  // eval leaves the stats alone
  std::vector<float> xv = x.to_vector(), yv = y.to_vector();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const int c = static_cast<int>((i / 4) % 3);
    CHECK(yv[i] == Approx((xv[i] - rm[c]) / std::sqrt(rv[c] + 1e-5)).epsilon(1e-5).margin(1e-6));
  }
  REQUIRE_THROWS_WITH(bn(Var(Tensor::zeros({2, 4}))),
                      Catch::Contains("BatchNorm2d(3)") && Catch::Contains("f32[2, 4]@cpu"));
}

TEST_CASE("activation and pooling modules compose in a Sequential") {
  nn::Sequential net;
  net.add(std::make_shared<nn::BatchNorm2d>(2));
  net.add(std::make_shared<nn::ReLU>());
  net.add(std::make_shared<nn::MaxPool2d>(2, 2));
  net.add(std::make_shared<nn::ReLU6>());
  net.add(std::make_shared<nn::AvgPool2d>(3, 1, 1));
  net.add(std::make_shared<nn::SignSTE>());
  net.add(std::make_shared<nn::GlobalAvgPool>());
  Var x(testing::random_tensor({3, 2, 6, 5}, 22), true);
  Var y = net(x);
  REQUIRE(y.shape() == Shape{3, 2});
  REQUIRE(net.buffers().size() == 2);
  backward(nn::sum(y));
  REQUIRE(x.grad().shape() == x.shape());
}

TEST_CASE("flatten shares storage and its backward restores the shape") {
  Var x(testing::random_tensor({2, 3, 4}, 5), true);
  Var f = nn::flatten(x);
  REQUIRE(f.shape() == Shape{2, 12});
  REQUIRE(f.value().raw() == x.value().raw());
  Tensor r = testing::random_tensor({2, 12}, 6);
  backward(nn::sum(nn::mul(f, Var(r))));
  REQUIRE(x.grad().shape() == Shape{2, 3, 4});
  REQUIRE(x.grad().to_vector() == r.to_vector());
  nn::Flatten layer;
  REQUIRE(layer(Var(Tensor::zeros({5, 2, 2, 2}))).shape() == Shape{5, 8});
  REQUIRE(nn::flatten(Var(Tensor::zeros({5}))).shape() == Shape{5, 1});
}

TEST_CASE("gradients summed on the CPU: conv2d adds its input gradient in place, shared ones stay apart") {
  testing::check_conv_grad_sum(Device::CPU);
  testing::check_shared_grads_stay_apart(Device::CPU);
}

TEST_CASE("a backward closure that does not read an activation does not keep it alive") {
  // y = relu(x) is read by nothing in backward (relu reads x; scale and sum need y's gradient
  // only), so its value is freed as soon as the forward code drops its Var; the gradients are
  // those of the values themselves.
  Var x(testing::random_tensor({3, 4}, 11), true);
  GradRef y_ref;
  Var loss;
  {
    Var y = nn::relu(x);
    y_ref = y;
    REQUIRE_FALSE(y_ref.value_released());
    loss = nn::sum(nn::scale(y, 2.f));
  }
  REQUIRE(y_ref.value_released());
  backward(loss);
  const std::vector<float> xv = x.value().to_vector(), g = x.grad().to_vector();
  for (size_t i = 0; i < xv.size(); ++i) REQUIRE(g[i] == (xv[i] > 0.f ? 2.f : 0.f));
  // A Var still held (here: the loss) keeps its value.
  REQUIRE(loss.value().numel() == 1);
}

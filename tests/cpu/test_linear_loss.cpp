// matmul, linear, cross-entropy, top-k and flatten on the CPU: hand-computed values, error
// messages, and backward against finite differences.
#include <cmath>

#include "engine/nn/functional.h"
#include "engine/nn/linear.h"
#include "engine/nn/loss.h"
#include "engine/nn/reshape.h"
#include "engine/ops/loss.h"
#include "engine/ops/matmul.h"
#include "tests/support/testing.h"

using namespace mdq;

namespace {
// a [2,3] and b [3,2] with a b = [[58, 64], [139, 154]], and their transposes as stored tensors.
const Tensor kA = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
const Tensor kAt = Tensor::from_vector({1, 4, 2, 5, 3, 6}, {3, 2});
const Tensor kB = Tensor::from_vector({7, 8, 9, 10, 11, 12}, {3, 2});
const Tensor kBt = Tensor::from_vector({7, 9, 11, 8, 10, 12}, {2, 3});
const std::vector<float> kAB = {58, 64, 139, 154};
}  // namespace

TEST_CASE("matmul gives the hand-computed product for every transpose combination") {
  REQUIRE(ops::matmul(kA, kB).to_vector() == kAB);
  REQUIRE(ops::matmul(kAt, kB, true, false).to_vector() == kAB);
  REQUIRE(ops::matmul(kA, kBt, false, true).to_vector() == kAB);
  REQUIRE(ops::matmul(kAt, kBt, true, true).to_vector() == kAB);
  REQUIRE(ops::matmul(kA, kBt, false, true).shape() == Shape{2, 2});
  REQUIRE(ops::matmul(kB, kA).shape() == Shape{3, 3});
}

TEST_CASE("matmul_into overwrites or accumulates, and an empty inner dimension gives zeros") {
  Tensor out = Tensor::full({2, 2}, 1.f);
  ops::matmul_into(out, kA, kB, false, false, /*accumulate=*/true);
  REQUIRE(out.to_vector() == std::vector<float>{59, 65, 140, 155});
  testing::poison(out);
  ops::matmul_into(out, kAt, kBt, true, true);
  REQUIRE(out.to_vector() == kAB);
  REQUIRE(ops::matmul(Tensor::zeros({2, 0}), Tensor::zeros({0, 3})).to_vector() == std::vector<float>(6, 0.f));
  REQUIRE_THROWS_WITH(ops::matmul_into(out, kB, kA),
                      Catch::Contains("matmul_into") && Catch::Contains("f32[2, 2]@cpu"));
}

TEST_CASE("matmul shape errors name the op and both operands") {
  REQUIRE_THROWS_WITH(ops::matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})),
                      Catch::Contains("matmul: inner dimensions differ: f32[2, 3]@cpu vs f32[4, 5]@cpu"));
  REQUIRE_THROWS_WITH(ops::matmul(Tensor::zeros({2, 3}), Tensor::zeros({3})),
                      Catch::Contains("matmul") && Catch::Contains("f32[3]@cpu"));
}

TEST_CASE("add_row_vector and sum_rows") {
  Tensor x = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = Tensor::from_vector({10, 20, 30}, {3});
  REQUIRE(ops::add_row_vector(x, b).to_vector() == std::vector<float>{11, 22, 33, 14, 25, 36});
  REQUIRE(ops::sum_rows(x).to_vector() == std::vector<float>{5, 7, 9});
  REQUIRE_THROWS_WITH(ops::add_row_vector(x, Tensor::zeros({2})),
                      Catch::Contains("add_row_vector") && Catch::Contains("f32[2]@cpu"));
}

TEST_CASE("linear forward and backward (x, weight, bias) match finite differences") {
  Tensor r = testing::random_tensor({5, 3}, 99);  // a fixed weighting so every output matters
  auto weighted = [r](const Var& y) { return nn::sum(nn::mul(y, Var(r))); };
  testing::check_gradients([&](std::vector<Var>& v) { return weighted(nn::linear(v[0], v[1], v[2])); },
                           {testing::random_tensor({5, 4}, 1), testing::random_tensor({3, 4}, 2),
                            testing::random_tensor({3}, 3)});
  testing::check_gradients([&](std::vector<Var>& v) { return weighted(nn::linear(v[0], v[1], Var())); },
                           {testing::random_tensor({5, 4}, 4), testing::random_tensor({3, 4}, 5)});
  // Forward by hand: x [1,2] = [1, 2], w = [[1, 0], [1, 1], [0, -1]], b = [0.5, 0, 1].
  Var y = nn::linear(Var(Tensor::from_vector({1, 2}, {1, 2})), Var(Tensor::from_vector({1, 0, 1, 1, 0, -1}, {3, 2})),
                     Var(Tensor::from_vector({0.5f, 0, 1}, {3})));
  REQUIRE(y.value().to_vector() == std::vector<float>{1.5f, 3, -1});
  REQUIRE_THROWS_WITH(nn::linear(Var(Tensor::zeros({2, 4})), Var(Tensor::zeros({3, 5})), Var()),
                      Catch::Contains("linear") && Catch::Contains("f32[2, 4]@cpu") && Catch::Contains("f32[3, 5]@cpu"));
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

TEST_CASE("cross-entropy on a hand case, with probabilities, and stable for large logits") {
  // Row 0: equal logits, loss ln 3. Row 1: softmax [4/6, 1/6, 1/6], label 0, loss ln 1.5.
  Tensor logits = Tensor::from_vector({0, 0, 0, std::log(4.f), 0, 0}, {2, 3});
  Tensor labels = Tensor::from_vector_i32({1, 0}, {2});
  Tensor probs;
  Tensor loss = ops::cross_entropy_forward(logits, labels, &probs);
  REQUIRE(loss.shape() == Shape{1});
  REQUIRE(loss.item() == Approx(std::log(4.5) / 2).epsilon(1e-6));
  testing::require_close(probs, Tensor::from_vector({1 / 3.f, 1 / 3.f, 1 / 3.f, 4 / 6.f, 1 / 6.f, 1 / 6.f}, {2, 3}),
                         1e-7f, 1e-6f, "probs");
  // grad = (probs - onehot) * scale / N
  testing::require_close(ops::cross_entropy_backward(probs, labels, 2.f),
                         Tensor::from_vector({1 / 3.f, -2 / 3.f, 1 / 3.f, -2 / 6.f, 1 / 6.f, 1 / 6.f}, {2, 3}), 1e-7f,
                         1e-6f, "grad");
  Tensor big = Tensor::from_vector({1000, 0, -1000}, {1, 3});
  REQUIRE(ops::cross_entropy_forward(big, Tensor::from_vector_i32({1}, {1}), nullptr).item() == Approx(1000));
  REQUIRE(ops::cross_entropy_forward(big, Tensor::from_vector_i32({0}, {1}), nullptr).item() == Approx(0).margin(1e-6));
}

TEST_CASE("cross-entropy backward matches finite differences, alone and after a linear layer") {
  Tensor labels = Tensor::from_vector_i32({2, 0, 4, 4}, {4});
  testing::check_gradients([&](std::vector<Var>& v) { return nn::cross_entropy(v[0], labels); },
                           {testing::random_tensor({4, 5}, 11, -3.f, 3.f)});
  testing::check_gradients(
      [&](std::vector<Var>& v) { return nn::cross_entropy(nn::linear(v[0], v[1], v[2]), labels); },
      {testing::random_tensor({4, 6}, 12), testing::random_tensor({5, 6}, 13), testing::random_tensor({5}, 14)});
}

TEST_CASE("an out-of-range label throws, naming the op, the label, its index and K") {
  Tensor logits = testing::random_tensor({3, 4}, 1);
  for (int bad : {-1, 4}) {
    Tensor labels = Tensor::from_vector_i32({0, 3, bad}, {3});
    std::string value = "label " + std::to_string(bad) + " at index 2";
    REQUIRE_THROWS_WITH(ops::cross_entropy_forward(logits, labels, nullptr),
                        Catch::Contains("cross_entropy") && Catch::Contains(value) && Catch::Contains("K = 4"));
    REQUIRE_THROWS_WITH(ops::count_topk_correct(logits, labels, 1),
                        Catch::Contains("count_topk_correct") && Catch::Contains(value) && Catch::Contains("K = 4"));
    REQUIRE_THROWS_WITH(ops::cross_entropy_backward(logits, labels, 1.f), Catch::Contains(value));
  }
  REQUIRE_THROWS_WITH(ops::cross_entropy_forward(logits, Tensor::from_vector_i32({0, 1}, {2}), nullptr),
                      Catch::Contains("f32[3, 4]@cpu") && Catch::Contains("i32[2]@cpu"));
}

TEST_CASE("top-k counts on a hand case, ties going to the lower class index") {
  Tensor logits = Tensor::from_vector({0.1f, 0.9f, 0.3f, 0.2f, 0.5f, 0.4f,   // label 1: rank 1
                                       0.1f, 0.9f, 0.3f, 0.2f, 0.5f, 0.4f,   // label 4: rank 2
                                       0.1f, 0.9f, 0.3f, 0.2f, 0.5f, 0.4f,   // label 0: rank 6
                                       1, 1, 1, 1, 1, 1,                     // label 2: tied with all, rank 3
                                       2, 2, 1, 0, 0, 0},                    // label 0: tied with class 1, rank 1
                                      {5, 6});
  Tensor labels = Tensor::from_vector_i32({1, 4, 0, 2, 0}, {5});
  REQUIRE(ops::count_topk_correct(logits, labels, 1) == 2);
  REQUIRE(ops::count_topk_correct(logits, labels, 2) == 3);
  REQUIRE(ops::count_topk_correct(logits, labels, 3) == 4);
  REQUIRE(ops::count_topk_correct(logits, labels, 5) == 4);
  REQUIRE(ops::count_topk_correct(logits, labels, 6) == 5);
  REQUIRE(ops::count_topk_correct(logits, labels, 100) == 5);
  REQUIRE_THROWS_WITH(ops::count_topk_correct(logits, labels, 0), Catch::Contains("k must be at least 1"));
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

// conv2d, matmul, the row-wise ops, linear, cross-entropy, top-k and elementwise ops on the
// CPU: hand-computed values, edge cases and error messages. Random shapes, finite differences
// and the other backends are the op table's (tests/ops/op_table.h, tests/cpu/test_ops.cpp).
#include <cmath>

#include "engine/nn/conv2d.h"
#include "engine/nn/functional.h"
#include "engine/nn/linear.h"
#include "engine/ops/conv2d.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/loss.h"
#include "engine/ops/matmul.h"
#include "tests/support/precision_scope.h"
#include "tests/support/testing.h"

using namespace mdq;

namespace {

Tensor iota(const Shape& shape) {  // 1, 2, 3, ...
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i + 1);
  return Tensor::from_vector(v, shape);
}

// a [2,3] and b [3,2] with a b = [[58, 64], [139, 154]], and their transposes as stored tensors.
const Tensor kA = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
const Tensor kAt = Tensor::from_vector({1, 4, 2, 5, 3, 6}, {3, 2});
const Tensor kB = Tensor::from_vector({7, 8, 9, 10, 11, 12}, {3, 2});
const Tensor kBt = Tensor::from_vector({7, 9, 11, 8, 10, 12}, {2, 3});
const std::vector<float> kAB = {58, 64, 139, 154};

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

TEST_CASE("conv2d_output_shape is floor((H + 2 padding - K) / stride) + 1, what the forward returns") {
  struct Case {
    Shape x, w;
    ops::Conv2dParams p;
    Shape y;
  };
  for (const Case& c : {Case{{2, 2, 8, 5}, {3, 2, 3, 2}, {3, 2, 1}, {2, 3, 4, 3}},
                        Case{{1, 4, 9, 8}, {6, 2, 3, 3}, {2, 1, 2}, {1, 6, 5, 4}},
                        Case{{1, 2, 7, 5}, {3, 2, 2, 2}, {2, 0, 1}, {1, 3, 3, 2}}}) {  // stride 2 drops a row
    REQUIRE(ops::conv2d_output_shape(c.x, c.w, c.p) == c.y);
    REQUIRE(ops::conv2d_forward(testing::random_tensor(c.x, 1), testing::random_tensor(c.w, 2), Tensor(), c.p).shape() ==
            c.y);
  }
}

TEST_CASE("conv2d without bias records grads for x and w only") {
  Var x(testing::random_tensor({1, 2, 4, 4}, 7), true), w(testing::random_tensor({3, 2, 3, 3}, 8), true);
  backward(nn::sum(nn::conv2d(x, w, Var(), {1, 1, 1})));
  REQUIRE(x.has_grad());
  REQUIRE(w.has_grad());
  REQUIRE(x.grad().shape() == x.shape());
}

TEST_CASE("conv2d on the CPU computes in fp32 at any precision, and nn::conv2d's gradients are the ops'") {
  const ops::Conv2dParams p{1, 1, 1};
  Tensor x = testing::random_tensor({2, 8, 6, 6}, 31);
  Tensor w = testing::random_tensor({8, 8, 3, 3}, 32);
  Tensor dy = testing::random_tensor(ops::conv2d_output_shape(x.shape(), w.shape(), p), 33);
  for (Precision prec : {Precision::FP32, Precision::BF16}) {
    testing::PrecisionScope scope(prec);
    Tensor y = ops::conv2d_forward(x, w, Tensor(), p);
    {
      testing::PrecisionScope fp32(Precision::FP32);
      REQUIRE(y.to_vector() == ops::conv2d_forward(x, w, Tensor(), p).to_vector());
    }
    ops::Conv2dGrads g = ops::conv2d_backward(dy, x, w, p, true, true);
    REQUIRE(g.input.to_vector() == ops::conv2d_backward_input(dy, w, x.shape(), p).to_vector());
    REQUIRE(g.weight.to_vector() == ops::conv2d_backward_weight(dy, x, w.shape(), p).to_vector());
    // On the CPU nn::conv2d stays NCHW f32 at bf16 (engine/ops/layout.h); its gradients are the ops'.
    Var xv(x, true), wv(w, true);
    Var out = nn::conv2d(xv, wv, Var(), p);
    REQUIRE(out.value().to_vector() == y.to_vector());
    backward(nn::sum(nn::mul(out, Var(dy))));
    REQUIRE(xv.grad().to_vector() == g.input.to_vector());
    REQUIRE(wv.grad().to_vector() == g.weight.to_vector());
  }
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

TEST_CASE("linear forward by hand, and a shape error that names both operands") {
  // x [1,2] = [1, 2], w = [[1, 0], [1, 1], [0, -1]], b = [0.5, 0, 1].
  Var y = nn::linear(Var(Tensor::from_vector({1, 2}, {1, 2})), Var(Tensor::from_vector({1, 0, 1, 1, 0, -1}, {3, 2})),
                     Var(Tensor::from_vector({0.5f, 0, 1}, {3})));
  REQUIRE(y.value().to_vector() == std::vector<float>{1.5f, 3, -1});
  REQUIRE_THROWS_WITH(nn::linear(Var(Tensor::zeros({2, 4})), Var(Tensor::zeros({3, 5})), Var()),
                      Catch::Contains("linear") && Catch::Contains("f32[2, 4]@cpu") && Catch::Contains("f32[3, 5]@cpu"));
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

TEST_CASE("elementwise ops name the op and both operands on a shape mismatch") {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({3, 2});
  REQUIRE_THROWS_WITH(ops::add(a, b), Catch::Contains("add") && Catch::Contains("f32[2, 3]@cpu") &&
                                          Catch::Contains("f32[3, 2]@cpu"));
}

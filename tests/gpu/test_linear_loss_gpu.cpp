// matmul (fp32/tf32/bf16), row-wise bias ops, linear, cross-entropy and top-k on the GPU,
// each against the CPU reference on random inputs.
#include <cmath>
#include <string>

#include "engine/nn/functional.h"
#include "engine/nn/linear.h"
#include "engine/nn/loss.h"
#include "engine/nn/reshape.h"
#include "engine/ops/loss.h"
#include "engine/ops/matmul.h"
#include "engine/ops/elementwise.h"
#include "engine/precision.h"
#include "engine/random.h"
#include "tests/support/testing.h"

using namespace mdq;

namespace {

// Sets the compute precision for one scope and restores the previous one.
struct PrecisionScope {
  Precision saved = precision();
  explicit PrecisionScope(Precision p) { set_precision(p); }
  ~PrecisionScope() { set_precision(saved); }
};

// Labels in [0, k) from a seed (never out of range).
Tensor random_labels(int64_t n, int64_t k, uint64_t seed, Device device) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  Rng rng(seed);
  for (auto& x : v) x = static_cast<int32_t>(rng.below(static_cast<uint64_t>(k)));
  return Tensor::from_vector_i32(v, {n}, device);
}

}  // namespace

TEST_CASE("matmul on the GPU matches the CPU for every transpose and precision") {
  struct Case { int64_t m, k, n; };
  // Error model: inputs in [-1, 1), so an output's rounding error grows like sqrt(K) times the
  // operand rounding unit: fp32 ~6e-8 (accumulation only), tf32 ~5e-4 and bf16 ~4e-3 (operands).
  struct Tol { Precision p; float per_sqrt_k; float rtol; };
  for (Tol tol : {Tol{Precision::FP32, 1e-5f, 1e-4f}, Tol{Precision::TF32, 4e-3f, 1e-2f},
                  Tol{Precision::BF16, 2e-2f, 5e-2f}}) {
    PrecisionScope scope(tol.p);
    for (Case c : {Case{1, 1, 1}, Case{17, 33, 65}, Case{128, 512, 256}, Case{3, 1000, 2}}) {
      for (int t = 0; t < 4; ++t) {
        const bool ta = t & 1, tb = t & 2;
        Tensor a = testing::random_tensor(ta ? Shape{c.k, c.m} : Shape{c.m, c.k}, 100 + t);
        Tensor b = testing::random_tensor(tb ? Shape{c.n, c.k} : Shape{c.k, c.n}, 200 + t);
        const std::string what = std::string(precision_name(tol.p)) + " M=" + std::to_string(c.m) +
                                 " K=" + std::to_string(c.k) + " N=" + std::to_string(c.n) +
                                 " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb);
        const float atol = tol.per_sqrt_k * std::sqrt(static_cast<float>(c.k));
        Tensor expected = ops::matmul(a, b, ta, tb);
        Tensor ga = a.cuda(), gb = b.cuda();
        testing::require_close(ops::matmul(ga, gb, ta, tb), expected, atol, tol.rtol, what);
        Tensor out = Tensor::empty({c.m, c.n}, DType::F32, Device::CUDA);
        testing::poison(out);  // beta = 0 must not read the NaNs
        ops::matmul_into(out, ga, gb, ta, tb);
        testing::require_close(out, expected, atol, tol.rtol, what + " (into)");
        ops::matmul_into(out, ga, gb, ta, tb, /*accumulate=*/true);
        testing::require_close(out, ops::scale(expected, 2.f), 2 * atol, tol.rtol, what + " (accumulate)");
      }
    }
  }
}

TEST_CASE("add_row_vector and sum_rows on the GPU match the CPU") {
  for (Shape s : {Shape{1, 1}, Shape{1000, 3}, Shape{3, 1000}, Shape{257, 65}}) {
    Tensor x = testing::random_tensor(s, 1), b = testing::random_tensor({s[1]}, 2);
    testing::require_close(ops::add_row_vector(x.cuda(), b.cuda()), ops::add_row_vector(x, b), 0, 0,
                           "add_row_vector " + shape_str(s));
    testing::require_close(ops::sum_rows(x.cuda()), ops::sum_rows(x), 1e-5f * std::sqrt(float(s[0])), 1e-5f,
                           "sum_rows " + shape_str(s));
  }
}

TEST_CASE("linear forward and backward on the GPU match the CPU") {
  struct Case { int64_t n, in, out; };
  for (Case c : {Case{1, 1, 1}, Case{7, 13, 5}, Case{64, 256, 100}}) {
    for (bool with_bias : {true, false}) {
      const std::string what = "linear N=" + std::to_string(c.n) + " in=" + std::to_string(c.in) +
                               " out=" + std::to_string(c.out) + (with_bias ? " bias" : "");
      Tensor x = testing::random_tensor({c.n, c.in}, 1), w = testing::random_tensor({c.out, c.in}, 2);
      Tensor b = testing::random_tensor({c.out}, 3), r = testing::random_tensor({c.n, c.out}, 4);
      auto run = [&](Device d, Var& vx, Var& vw, Var& vb) {
        vx = Var(x.to(d), true);
        vw = Var(w.to(d), true);
        vb = with_bias ? Var(b.to(d), true) : Var();
        Var y = nn::linear(vx, vw, vb);
        backward(nn::sum(nn::mul(y, Var(r.to(d)))));
        return y.value();
      };
      Var cx, cw, cb, gx, gw, gb;
      Tensor cy = run(Device::CPU, cx, cw, cb), gy = run(Device::CUDA, gx, gw, gb);
      const float atol = 1e-5f * std::sqrt(float(std::max(c.in, c.n)));
      testing::require_close(gy, cy, atol, 1e-4f, what + " forward");
      testing::require_close(gx.grad(), cx.grad(), atol, 1e-4f, what + " dx");
      testing::require_close(gw.grad(), cw.grad(), atol, 1e-4f, what + " dw");
      if (with_bias) testing::require_close(gb.grad(), cb.grad(), atol, 1e-4f, what + " dbias");
    }
  }
}

TEST_CASE("cross-entropy forward and backward on the GPU match the CPU") {
  for (Shape s : {Shape{1, 1}, Shape{3, 10}, Shape{37, 7}, Shape{128, 1000}, Shape{5, 33}}) {
    const std::string what = "cross_entropy " + shape_str(s);
    Tensor logits = testing::random_tensor(s, 7, -8.f, 8.f);
    Tensor labels = random_labels(s[0], s[1], 8, Device::CPU);
    Tensor probs, gprobs = Tensor::empty(s, DType::F32, Device::CUDA);
    testing::poison(gprobs);  // written in place: every element must be overwritten
    void* before = gprobs.raw();
    Tensor loss = ops::cross_entropy_forward(logits, labels, &probs);
    Tensor gloss = ops::cross_entropy_forward(logits.cuda(), labels.cuda(), &gprobs);
    REQUIRE(gprobs.raw() == before);
    REQUIRE(gloss.is_cuda());
    testing::require_close(gloss, loss, 1e-5f, 1e-5f, what + " loss");
    testing::require_close(gprobs, probs, 1e-6f, 1e-5f, what + " probs");
    testing::require_close(ops::cross_entropy_backward(gprobs, labels.cuda(), 0.5f),
                           ops::cross_entropy_backward(probs, labels, 0.5f), 1e-7f, 1e-5f, what + " grad");
    testing::require_close(ops::cross_entropy_backward(gprobs, labels.cuda(), Tensor::full({1}, 0.5f, Device::CUDA)),
                           ops::cross_entropy_backward(probs, labels, 0.5f), 1e-7f, 1e-5f, what + " grad (tensor)");
    // Through autograd: nn::cross_entropy's grad on the GPU equals the CPU one.
    Var cl(logits, true), gl(logits.cuda(), true);
    backward(nn::scale(nn::cross_entropy(cl, labels), 3.f));
    backward(nn::scale(nn::cross_entropy(gl, labels.cuda()), 3.f));
    testing::require_close(gl.grad(), cl.grad(), 1e-7f, 1e-5f, what + " autograd");
  }
}

TEST_CASE("top-k counts on the GPU equal the CPU counts exactly, ties included") {
  for (Shape s : {Shape{1, 1}, Shape{256, 10}, Shape{128, 1000}, Shape{33, 100}}) {
    for (bool coarse : {false, true}) {
      Tensor logits = testing::random_tensor(s, 9, -2.f, 2.f);
      if (coarse) {  // few distinct values: many ties with the label's logit
        float* p = logits.data<float>();
        for (int64_t i = 0; i < logits.numel(); ++i) p[i] = std::floor(p[i] * 2.f);
      }
      Tensor labels = random_labels(s[0], s[1], 10, Device::CPU);
      for (int k : {1, 5, int(s[1])}) {
        INFO("top-" << k << " " << shape_str(s) << (coarse ? " coarse" : ""));
        REQUIRE(ops::count_topk_correct(logits.cuda(), labels.cuda(), k) == ops::count_topk_correct(logits, labels, k));
      }
    }
  }
}

TEST_CASE("a bad label on the GPU throws with its index and value, and the next call is clean") {
  Tensor logits = testing::random_tensor({300, 10}, 11, -1.f, 1.f, Device::CUDA);
  std::vector<int32_t> v(300, 3);
  v[250] = 10;
  v[117] = -1;  // the first bad row is the one reported
  Tensor bad = Tensor::from_vector_i32(v, {300}, Device::CUDA);
  REQUIRE_THROWS_WITH(ops::cross_entropy_forward(logits, bad, nullptr),
                      Catch::Contains("cross_entropy") && Catch::Contains("label -1 at index 117") &&
                          Catch::Contains("K = 10"));
  REQUIRE_THROWS_WITH(ops::count_topk_correct(logits, bad, 5),
                      Catch::Contains("count_topk_correct") && Catch::Contains("label -1 at index 117"));
  Tensor good = random_labels(300, 10, 12, Device::CUDA);
  REQUIRE(std::isfinite(ops::cross_entropy_forward(logits, good, nullptr).item()));
  REQUIRE(ops::count_topk_correct(logits, good, 10) == 300);
  v[117] = 3;
  REQUIRE_THROWS_WITH(ops::cross_entropy_forward(logits, Tensor::from_vector_i32(v, {300}, Device::CUDA), nullptr),
                      Catch::Contains("label 10 at index 250"));
}

TEST_CASE("deferred label checks report a bad label at the next check, without a sync per call") {
  ops::set_deferred_label_checks(true);
  Tensor logits = testing::random_tensor({64, 10}, 13, -1.f, 1.f, Device::CUDA);
  std::vector<int32_t> v(64, 2);
  v[40] = 12;
  Tensor good = random_labels(64, 10, 14, Device::CUDA);
  ops::cross_entropy_forward(logits, good, nullptr);
  ops::check_pending_label_errors();  // clean
  ops::cross_entropy_forward(logits, Tensor::from_vector_i32(v, {64}, Device::CUDA), nullptr);  // no throw yet
  REQUIRE_THROWS_WITH(ops::check_pending_label_errors(), Catch::Contains("label 12 at index 40"));
  ops::check_pending_label_errors();  // reported once
  ops::cross_entropy_forward(logits, Tensor::from_vector_i32(v, {64}, Device::CUDA), nullptr);
  REQUIRE_THROWS_WITH(ops::cross_entropy_forward(logits, good, nullptr), Catch::Contains("label 12 at index 40"));
  ops::set_deferred_label_checks(false);
}

TEST_CASE("flatten of a GPU tensor keeps it on the GPU and shares storage") {
  Var x(testing::random_tensor({4, 2, 3, 3}, 1, -1.f, 1.f, Device::CUDA), true);
  Var f = nn::flatten(x);
  REQUIRE(f.value().describe() == "f32[4, 18]@cuda");
  REQUIRE(f.value().raw() == x.value().raw());
}

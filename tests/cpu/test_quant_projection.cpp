// Quantizer projections (E1–E3) forward against hand-computed values, backward against finite
// differences, the mirror-map identities (E4, E5), E11 rounding, and finiteness when saturated.
#include <cmath>

#include "engine/nn/functional.h"
#include "engine/quant/projection.h"
#include "tests/support/testing.h"

using namespace mdq;
using namespace mdq::quant;

namespace {

double softmax_x(const std::vector<double>& logits, double beta, int K) {
  double mx = -1e300, sum = 0, x = 0;
  for (double l : logits) mx = std::max(mx, beta * l);
  for (int l = 0; l < K; ++l) sum += std::exp(beta * logits[l] - mx);
  for (int l = 0; l < K; ++l) x += softmax_level(K, l) * std::exp(beta * logits[l] - mx) / sum;
  return x;
}

}  // namespace

TEST_CASE("E1, E2: tanh projection matches hand-computed values") {
  const std::vector<float> s = {-1.f, -0.25f, 0.1f, 0.6f, 2.f};
  const float beta = 1.5f;
  Tensor dual = Tensor::from_vector(s, {5});
  std::vector<float> x2 = tanh_project(dual, beta, 2).to_vector(), x3 = tanh_project(dual, beta, 3).to_vector();
  for (size_t i = 0; i < s.size(); ++i) {
    INFO("element " << i);
    REQUIRE(x2[i] == Approx(std::tanh(1.5 * s[i])).margin(1e-6));
    REQUIRE(x3[i] == Approx(0.5 * (std::tanh(1.5 * (s[i] + 0.5)) + std::tanh(1.5 * (s[i] - 0.5)))).margin(1e-6));
  }
}

TEST_CASE("E3: softmax projection matches hand-computed values for K = 2, 3, 4") {
  REQUIRE(softmax_level(2, 0) == -1.f);
  REQUIRE(softmax_level(4, 0) == -2.f);
  REQUIRE(softmax_level(4, 1) == -1.f);
  REQUIRE(softmax_level(4, 2) == 1.f);
  REQUIRE(softmax_level(4, 3) == 2.f);
  for (int K : {2, 3, 4}) {
    const int64_t n = 7;
    Tensor logits = testing::random_tensor({K, n}, 100 + K, -2.f, 2.f);
    const float beta = 1.3f;
    std::vector<float> x = softmax_project(logits, beta, K).to_vector(), u = logits.to_vector();
    for (int64_t i = 0; i < n; ++i) {
      std::vector<double> li;
      for (int l = 0; l < K; ++l) li.push_back(u[l * n + i]);
      INFO("K " << K << " element " << i);
      REQUIRE(x[i] == Approx(softmax_x(li, beta, K)).margin(1e-6));
    }
  }
  // Binary softmax is the tanh projection of the logit difference: x = tanh(β (ũ₁ − ũ₀) / 2).
  Tensor l2 = Tensor::from_vector({0.3f, -0.4f}, {2, 1});
  REQUIRE(softmax_project(l2, 2.f, 2).item() == Approx(std::tanh(2.0 * (-0.4 - 0.3) / 2)).margin(1e-6));
}

TEST_CASE("projection backward (GD-tanh, PMF Jacobians) matches finite differences") {
  for (int K : {2, 3}) {
    Tensor c = testing::random_tensor({3, 5}, 7 + K);
    testing::check_gradients(
        [&](std::vector<Var>& v) { return nn::sum(nn::mul(tanh_project(v[0], 1.7f, K), Var(c))); },
        {testing::random_tensor({3, 5}, 11 + K)}, 1e-2f, 2e-3f, 2e-2f);
  }
  for (int K : {2, 3, 4}) {
    Tensor c = testing::random_tensor({2, 3}, 17 + K);
    testing::check_gradients(
        [&](std::vector<Var>& v) { return nn::sum(nn::mul(softmax_project(v[0], 1.4f, K), Var(c))); },
        {testing::random_tensor({K, 2, 3}, 21 + K)}, 1e-2f, 2e-3f, 2e-2f);
  }
}

TEST_CASE("E4, E5: the mirror map's gradient inverts the projection where it is not saturated") {
  const float beta = 2.5f;
  Tensor dual = testing::random_tensor({1000}, 3, -1.2f, 1.2f);  // |β x̃| ≤ 3
  std::vector<float> s = dual.to_vector(), x = tanh_project(dual, beta, 2).to_vector();
  for (size_t i = 0; i < s.size(); ++i) {
    // atanh amplifies x's rounding (half an ulp, ≤ 6e-8) by 1/(1 − x²).
    const double tol = 2e-7 / (1.0 - double(x[i]) * x[i]) / beta + 1e-6;
    INFO("element " << i << ": x̃ " << s[i] << ", x " << x[i]);
    REQUIRE(std::fabs(tanh_mirror_grad(x[i], beta) - s[i]) <= tol);
  }
  // E5: ∇Φ_β(u) = (log u + 1)/β equals ũ up to a constant along the simplex's normal (1, …, 1).
  for (int K : {2, 3, 4}) {
    const int64_t n = 200;
    Tensor logits = testing::random_tensor({K, n}, 40 + K, -1.f, 1.f);
    std::vector<float> ul = logits.to_vector();
    auto check = [&](auto Kc) {
      constexpr int k = decltype(Kc)::value;
      for (int64_t i = 0; i < n; ++i) {
        float li[k], u[k];
        for (int l = 0; l < k; ++l) li[l] = ul[l * n + i];
        softmax_beta<k>(li, beta, u);
        const double c0 = (std::log(double(u[0])) + 1) / beta - li[0];
        for (int l = 1; l < k; ++l) REQUIRE(std::fabs((std::log(double(u[l])) + 1) / beta - li[l] - c0) < 2e-6);
      }
    };
    if (K == 2) check(Const<int, 2>{});
    if (K == 3) check(Const<int, 3>{});
    if (K == 4) check(Const<int, 4>{});
  }
}

TEST_CASE("E11: rounding maps binary, ternary and softmax levels exactly") {
  Tensor xb = Tensor::from_vector({-0.7f, -1e-30f, -0.f, 0.f, 1e-30f, 0.3f, 1.f, -1.f}, {8});
  REQUIRE(tanh_round(xb, 2).to_vector() == std::vector<float>{-1, -1, 1, 1, 1, 1, 1, -1});
  Tensor xt = Tensor::from_vector({-1.f, -0.6f, -0.5f, -0.49999997f, 0.f, 0.49999997f, 0.5f, 0.9f}, {8});
  REQUIRE(tanh_round(xt, 3).to_vector() == std::vector<float>{-1, -1, 0, 0, 0, 0, 1, 1});
  // Softmax: q_argmax over the leading dimension; the first maximum wins a tie.
  Tensor l3 = Tensor::from_vector({/*λ0*/ 0.9f, 0.1f, 0.2f, 0.5f, /*λ1*/ 0.1f, 0.8f, 0.2f, 0.5f,
                                   /*λ2*/ 0.0f, 0.1f, 0.7f, 0.1f},
                                  {3, 4});
  REQUIRE(softmax_round(l3, 3).to_vector() == std::vector<float>{-1, 0, 1, -1});
  Tensor l4 = Tensor::from_vector({5, 0, 0, 0, /**/ 0, 5, 0, 0, /**/ 0, 0, 5, 0, /**/ 0, 0, 0, 5}, {4, 4});
  REQUIRE(softmax_round(l4, 4).to_vector() == std::vector<float>{-2, -1, 1, 2});
  Tensor l2 = Tensor::from_vector({0.2f, -3.f, 0.1f, -2.f}, {2, 2});
  REQUIRE(softmax_round(l2, 2).to_vector() == std::vector<float>{-1, 1});
}

TEST_CASE("projections stay finite and exact at saturation (|β x̃| ≥ 20, β at the cap)") {
  const float cap = 1e5f;
  for (float beta : {20.f, cap}) {
    Tensor dual = Tensor::from_vector({-1e3f, -30.f, -1.f, 1.f, 30.f, 1e3f}, {6});
    std::vector<float> x = tanh_project(dual, beta, 2).to_vector();
    REQUIRE(x == std::vector<float>{-1, -1, -1, 1, 1, 1});
    std::vector<float> x3 = tanh_project(dual, beta, 3).to_vector();
    REQUIRE(x3 == std::vector<float>{-1, -1, -1, 1, 1, 1});
    Tensor g = Tensor::full({6}, 1e3f);
    for (float v : tanh_project_backward(dual, g, beta, 3).to_vector()) REQUIRE(std::isfinite(v));
    Tensor logits = Tensor::from_vector({-50.f, 0.f, 40.f, 3.f, 2.f, -1e3f}, {3, 2});
    for (float v : softmax_project(logits, beta, 3).to_vector()) REQUIRE(std::isfinite(v));
    for (float v : softmax_project_backward(logits, Tensor::full({2}, 1e3f), beta, 3).to_vector())
      REQUIRE(std::isfinite(v));
  }
  // The E4 map of an x that rounded to ±1 is finite (|x| held one ulp below 1).
  REQUIRE(std::isfinite(tanh_mirror_grad(1.f, 1.f)));
  REQUIRE(std::isfinite(tanh_mirror_grad(-1.f, 1.f)));
}

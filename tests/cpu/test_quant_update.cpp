// The fused step's CPU reference (engine/quant/update.h): the GD-tanh and PMF gradients it uses
// against finite differences of the loss through the projection, the Adam/momentum directions
// against a hand-written PyTorch recipe, and finite outputs for every method when saturated.
#include <cmath>

#include "engine/quant/projection.h"
#include "engine/quant/update.h"
#include "tests/support/testing.h"

using namespace mdq;
using namespace mdq::quant;

namespace {

// L(x) = Σ c_i x_i + ½ Σ x_i², so g = c + x.
double loss(const Tensor& x, const std::vector<float>& c) {
  std::vector<float> xv = x.to_vector();
  double l = 0;
  for (size_t i = 0; i < xv.size(); ++i) l += c[i] * double(xv[i]) + 0.5 * double(xv[i]) * xv[i];
  return l;
}

Tensor primal_of(const Method& m, const Tensor& stored, float beta, const Shape& shape) {
  Tensor x = Tensor::empty(shape);
  primal_from_stored(m, stored, beta, x);
  return x;
}

}  // namespace

TEST_CASE("GD-tanh and PMF steps move along finite differences of the loss through the projection") {
  const float beta = 1.6f;
  const int64_t n = 9;
  const Shape shape = {n};
  for (auto [rule, K] : {std::pair{Rule::GdTanh, 2}, {Rule::GdTanh, 3}, {Rule::Pmf, 2}, {Rule::Pmf, 3}, {Rule::Pmf, 4}}) {
    Method m{rule, K};
    Tensor stored = testing::random_tensor({m.planes() * n}, 5 + K, -1.f, 1.f);
    if (m.is_softmax()) stored = stored.reshape({K, n});
    std::vector<float> c = testing::random_tensor(shape, 9).to_vector();
    Tensor x = primal_of(m, stored, beta, shape);
    std::vector<float> xv = x.to_vector(), gv(n);
    for (int64_t i = 0; i < n; ++i) gv[i] = c[i] + xv[i];
    // SGD with lr 1: stored_new = stored − ∂L/∂stored.
    Tensor s = stored.clone(), none, primal = Tensor::empty(shape);
    StepArgs a;
    a.lr = 1.f;
    a.beta = a.beta_next = beta;
    step_tensors(m, Dir::Sgd, a, s, Tensor::from_vector(gv, shape), none, none, primal);
    std::vector<float> before = stored.to_vector(), after = s.to_vector();
    for (int64_t j = 0; j < stored.numel(); ++j) {
      const float h = 1e-3f;
      Tensor plus = stored.clone(), minus = stored.clone();
      plus.data<float>()[j] += h;
      minus.data<float>()[j] -= h;
      const double fd = (loss(primal_of(m, plus, beta, shape), c) - loss(primal_of(m, minus, beta, shape), c)) /
                        (double(plus.data<float>()[j]) - minus.data<float>()[j]);
      INFO(m.name() << " levels " << K << ", stored element " << j);
      REQUIRE(before[j] - after[j] == Approx(fd).margin(2e-4).epsilon(2e-3));
    }
  }
}

TEST_CASE("E8: the Adam and momentum directions follow PyTorch's recipes on the float method") {
  const int64_t n = 5;
  Method m = parse_method("float", 2);
  std::vector<float> w0 = testing::random_tensor({n}, 1).to_vector();
  for (Dir dir : {Dir::Adam, Dir::Momentum}) {
    Tensor s = Tensor::from_vector(w0, {n}), x = Tensor::empty({n});
    Tensor mm = Tensor::zeros({n}), vv = dir == Dir::Adam ? Tensor::zeros({n}) : Tensor();
    std::vector<double> ref(w0.begin(), w0.end()), rm(n, 0), rv(n, 0);
    const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, mu = 0.8;
    for (int t = 1; t <= 4; ++t) {
      std::vector<float> g = testing::random_tensor({n}, 50 + t).to_vector();
      StepArgs a;
      a.lr = float(lr);
      a.momentum = float(mu);
      a.inv_bias1 = float(1 / (1 - std::pow(b1, t)));
      a.inv_bias2 = float(1 / (1 - std::pow(b2, t)));
      step_tensors(m, dir, a, s, Tensor::from_vector(g, {n}), mm, vv, x);
      for (int64_t i = 0; i < n; ++i) {
        if (dir == Dir::Adam) {  // torch.optim.Adam, no weight decay, no amsgrad
          rm[i] = b1 * rm[i] + (1 - b1) * g[i];
          rv[i] = b2 * rv[i] + (1 - b2) * double(g[i]) * g[i];
          ref[i] -= lr / (1 - std::pow(b1, t)) * rm[i] / (std::sqrt(rv[i]) / std::sqrt(1 - std::pow(b2, t)) + eps);
        } else {  // torch.optim.SGD, momentum mu, dampening 0: buf = g at t = 1, then mu·buf + g
          rm[i] = t == 1 ? g[i] : mu * rm[i] + g[i];
          ref[i] -= lr * rm[i];
        }
      }
      std::vector<float> got = x.to_vector();
      for (int64_t i = 0; i < n; ++i) {
        INFO(direction_name(dir) << " step " << t << " element " << i);
        REQUIRE(got[i] == Approx(ref[i]).margin(1e-6));
      }
    }
  }
}

TEST_CASE("every method's step stays finite when saturated and at the β cap") {
  const int64_t n = 64;
  const float cap = 1e5f;
  for (const char* name : {"float", "bc", "gd-tanh", "md-tanh-s", "md-tanh", "pmf", "md-softmax-s", "md-softmax"}) {
    for (int K : {2, 3, 4}) {
      Method m;
      try {
        m = parse_method(name, K);
      } catch (const Error&) {
        continue;
      }
      for (Dir dir : {Dir::Sgd, Dir::Momentum, Dir::Adam}) {
        Shape sshape = m.is_softmax() ? Shape{K, n} : Shape{n};
        // |β x̃| ≥ 20 everywhere; E7 states sit on the boundary (x = ±1, u one-hot or 0).
        Tensor s = testing::random_tensor(sshape, 3, -40.f, 40.f);
        float* ps = s.data<float>();
        for (int64_t i = 0; i < s.numel(); ++i) ps[i] += ps[i] < 0 ? -20.f : 20.f;
        if (m.rule == Rule::MdTanh)
          for (int64_t i = 0; i < n; ++i) ps[i] = ps[i] < 0 ? -1.f : 1.f;
        if (m.rule == Rule::MdSoftmax)
          for (int64_t i = 0; i < n; ++i)
            for (int l = 0; l < K; ++l) ps[l * n + i] = l == i % K ? 1.f : 0.f;
        Tensor g = testing::random_tensor({n}, 4, -1e3f, 1e3f), x = Tensor::empty({n});
        Tensor mm = uses_m(dir) ? Tensor::zeros(sshape) : Tensor(), vv = uses_v(dir) ? Tensor::zeros(sshape) : Tensor();
        StepArgs a;
        a.lr = 1e-3f;
        a.beta = a.beta_next = cap;
        a.momentum = 0.9f;
        for (int t = 1; t <= 3; ++t) {
          a.inv_bias1 = 1.f / (1.f - std::pow(0.9f, float(t)));
          a.inv_bias2 = 1.f / (1.f - std::pow(0.999f, float(t)));
          step_tensors(m, dir, a, s, g, mm, vv, x);
        }
        INFO(m.name() << " levels " << K << " " << direction_name(dir));
        for (const Tensor* t : {&s, &x, &mm, &vv})
          if (t->defined())
            for (float f : t->to_vector()) REQUIRE(std::isfinite(f));
        for (float f : x.to_vector()) REQUIRE(std::fabs(f) <= (m.rule == Rule::Float ? 1e30f : float(m.is_softmax() && K == 4 ? 2 : 1)));
      }
    }
  }
}

TEST_CASE("E7 in md-bnn's arithmetic: the log-domain step inside, absorbing at the levels") {
  // Inside (|x| < 0.9, small steps) the two forms are the same step, tanh(atanh(x) − t).
  for (float x : {-0.89f, -0.5f, -0.013f, 0.27f, 0.6f, 0.88f})
    for (float t : {-0.3f, -0.01f, 0.02f, 0.4f}) {
      INFO("x " << x << " t " << t);
      REQUIRE(md_tanh_mdbnn(x, t) == Approx(std::tanh(std::atanh(double(x)) - t)).epsilon(2e-6).margin(1e-7));
    }
  // md-bnn's levels: −1 never moves; +1 comes back only with t > ~14.8 (e ≈ 2e20·exp(−2t) < 2^24).
  for (float t : {-100.f, -30.f, -1.f, 0.5f, 20.f}) REQUIRE(md_tanh_mdbnn(-1.f, t) == -1.f);  // -100: 0·inf
  REQUIRE(md_tanh_mdbnn(1.f, 5.f) == 1.f);
  REQUIRE(md_tanh_mdbnn(1.f, 20.f) < 1.f);
  REQUIRE(md_tanh_mdbnn(0.3f, -60.f) == 1.f);  // e overflows: +1, not NaN
  // The log-domain form (mdq's default) lets a weight at −1 move back.
  StepArgs exact;
  exact.lr = 5e-2f;
  exact.beta = exact.beta_next = 100.f;  // β·η·|g| = 5..10 against the clamped dual −8.66
  StepArgs mdbnn = exact;
  mdbnn.e7_mdbnn = 1;
  const Method m = parse_method("md-tanh", 2);
  Tensor s1 = Tensor::full({3}, -1.f), s2 = s1.clone(), g = testing::random_tensor({3}, 9, -2.f, -1.f);
  Tensor x = Tensor::empty({3}), no_m, no_v;
  step_tensors(m, Dir::Sgd, exact, s1, g, no_m, no_v, x);  // g < 0: the step raises x
  step_tensors(m, Dir::Sgd, mdbnn, s2, g, no_m, no_v, x);
  for (float v : s1.to_vector()) REQUIRE(v > -0.9999f);
  for (float v : s2.to_vector()) REQUIRE(v == -1.f);
}

TEST_CASE("E7 softmax in md-bnn's arithmetic: exponentiated gradient inside, a zero probability stays zero") {
  float u[3] = {0.2f, 0.5f, 0.3f};
  const float t[3] = {0.4f, -0.1f, 0.25f};
  double z = 0, w[3];
  for (int l = 0; l < 3; ++l) z += w[l] = u[l] * std::exp(-double(t[l]));
  md_softmax_mdbnn<3>(u, t);
  for (int l = 0; l < 3; ++l) REQUIRE(u[l] == Approx(w[l] / z).epsilon(1e-6));
  float v[3] = {0.f, 0.4f, 0.6f};
  const float big[3] = {-50.f, 3.f, 2.f};  // a step that pushes hard towards level 0
  md_softmax_mdbnn<3>(v, big);
  REQUIRE(v[0] == 0.f);
  REQUIRE(v[1] + v[2] == Approx(1.f));
}

// The Quantizer (E6–E11 over a model's parameters): E6 and E7 agree for fixed β, MD-tanh-S with
// annealing finds a brute-forced binary least-squares optimum, β follows E10, rounded weights
// swap in and out, state resumes bit for bit, bad methods are clear errors, and parameters
// stepped together step as they would alone.
#include <cmath>
#include <memory>
#include <string>

#include "engine/quant/quantizer.h"
#include "tests/support/testing.h"

using namespace mdq;
using namespace mdq::quant;

namespace {

nn::ParamRef param(const std::string& name, Tensor init) {
  return {name, Var(std::move(init), true), nn::ParamKind::Weight, 1, 1};
}

// ½‖A x − b‖² with A m×n row-major; returns the gradient A^T (A x − b).
struct LeastSquares {
  int64_t m, n;
  std::vector<float> A, b;
  std::vector<float> grad(const std::vector<float>& x) const {
    std::vector<float> r(m, 0.f), g(n, 0.f);
    for (int64_t i = 0; i < m; ++i) {
      double acc = -b[i];
      for (int64_t j = 0; j < n; ++j) acc += double(A[i * n + j]) * x[j];
      r[i] = float(acc);
    }
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t i = 0; i < m; ++i) acc += double(A[i * n + j]) * r[i];
      g[j] = float(acc);
    }
    return g;
  }
  double loss(const std::vector<float>& x) const {
    double l = 0;
    for (int64_t i = 0; i < m; ++i) {
      double acc = -b[i];
      for (int64_t j = 0; j < n; ++j) acc += double(A[i * n + j]) * x[j];
      l += 0.5 * acc * acc;
    }
    return l;
  }
};

void set_grad(Var& v, const std::vector<float>& g) {
  v.zero_grad();
  v.accumulate_grad(Tensor::from_vector(g, v.shape()));
}

}  // namespace

TEST_CASE("for fixed beta, E7 (primal) and E6 (stable) give the same iterates over 100 steps") {
  LeastSquares ls{12, 6, testing::random_tensor({12 * 6}, 1).to_vector(), testing::random_tensor({12}, 2).to_vector()};
  Tensor w = testing::random_tensor({6}, 3, -0.5f, 0.5f);
  for (auto [stable, primal, K] : {std::tuple{"md-tanh-s", "md-tanh", 2}, {"md-softmax-s", "md-softmax", 2},
                                   {"md-softmax-s", "md-softmax", 3}, {"md-softmax-s", "md-softmax", 4}}) {
    for (const char* dir : {"adam", "sgd"}) {
      QuantConfig cfg;
      cfg.levels = K;
      cfg.direction = dir;
      cfg.rho = 1.f;  // fixed β = β0
      cfg.beta0 = 2.f;
      cfg.method = stable;
      nn::ParamRef ps = param("w", w.clone()), pp = param("w", w.clone());
      Quantizer qs({ps}, cfg);
      cfg.method = primal;
      Quantizer qp({pp}, cfg);
      REQUIRE(qs.beta() == 2.f);
      testing::require_close(pp.var.value(), ps.var.value(), 1e-6f, 0, "initial primal");
      const float lr = std::string(dir) == "adam" ? 0.01f : 0.02f;
      for (int t = 0; t < 100; ++t) {
        set_grad(ps.var, ls.grad(ps.var.value().to_vector()));
        set_grad(pp.var, ls.grad(pp.var.value().to_vector()));
        qs.step(lr);
        qp.step(lr);
        INFO(stable << " vs " << primal << ", levels " << K << ", " << dir << ", step " << t);
        testing::require_close(pp.var.value(), ps.var.value(), 2e-5f, 1e-4f, "primal iterate");
      }
    }
  }
}

TEST_CASE("MD-tanh-S with annealing ends at the brute-force binary least-squares optimum") {
  const int64_t m = 24, n = 10;
  LeastSquares ls{m, n, testing::random_tensor({m * n}, 31).to_vector(), {}};
  std::vector<float> truth(n), noise = testing::random_tensor({m}, 33, -0.3f, 0.3f).to_vector();
  for (int64_t j = 0; j < n; ++j) truth[j] = j % 3 == 0 ? 1.f : -1.f;
  ls.b.assign(m, 0.f);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) ls.b[i] += ls.A[i * n + j] * truth[j];
    ls.b[i] += noise[i];
  }
  std::vector<float> best;
  double best_loss = 1e300;
  for (int mask = 0; mask < (1 << n); ++mask) {
    std::vector<float> x(n);
    for (int64_t j = 0; j < n; ++j) x[j] = (mask >> j) & 1 ? 1.f : -1.f;
    if (double l = ls.loss(x); l < best_loss) best_loss = l, best = x;
  }
  QuantConfig cfg;  // md-tanh-s, binary, Adam
  cfg.rho = 1.1f;
  cfg.interval = 20;
  nn::ParamRef p = param("w", testing::random_tensor({n}, 35, -0.1f, 0.1f));
  Quantizer q({p}, cfg);
  for (int t = 0; t < 1500; ++t) {
    set_grad(p.var, ls.grad(p.var.value().to_vector()));
    q.step(0.01f);
  }
  INFO("final beta " << q.beta());
  REQUIRE(q.rounded_weights()[0].second.to_vector() == best);
}

TEST_CASE("E10: beta is multiplied by rho every T steps up to the cap; E6 re-projects, E7 keeps x") {
  QuantConfig cfg;
  cfg.direction = "sgd";
  cfg.beta0 = 1.f;
  cfg.rho = 2.f;
  cfg.interval = 3;
  cfg.beta_cap = 10.f;
  const std::vector<float> expect = {2, 2, 2, 4, 4, 4, 8, 8, 8, 10, 10, 10};
  Tensor w = Tensor::from_vector({0.2f, -0.3f}, {2});
  nn::ParamRef ps = param("s", w.clone()), pp = param("p", w.clone());
  Quantizer qs({ps}, cfg);
  cfg.method = "md-tanh";
  Quantizer qp({pp}, cfg);
  const std::vector<float> x7 = pp.var.value().to_vector();
  for (size_t k = 0; k < expect.size(); ++k) {
    REQUIRE(qs.iteration() == int64_t(k));
    REQUIRE(qs.beta() == expect[k]);
    REQUIRE(Quantizer::beta_at(cfg, int64_t(k)) == expect[k]);
    // Zero gradient: the stored variable does not move, so x changes only through β.
    set_grad(ps.var, {0.f, 0.f});
    set_grad(pp.var, {0.f, 0.f});
    qs.step(0.1f);
    qp.step(0.1f);
    std::vector<float> x6 = ps.var.value().to_vector();
    REQUIRE(x6[0] == std::tanh(qs.beta() * 0.2f));
    REQUIRE(x6[1] == std::tanh(qs.beta() * -0.3f));
    REQUIRE(pp.var.value().to_vector() == x7);
  }
}

TEST_CASE("unknown methods and unsupported levels are errors that list what is supported") {
  auto build = [](const std::string& method, int levels, const std::string& dir = "adam") {
    QuantConfig cfg;
    cfg.method = method;
    cfg.levels = levels;
    cfg.direction = dir;
    Quantizer q({param("w", Tensor::zeros({3}))}, cfg);
  };
  REQUIRE_THROWS_WITH(build("md-foo", 2), Catch::Contains("unknown method 'md-foo'") && Catch::Contains("md-tanh-s (levels 2/3)"));
  REQUIRE_THROWS_WITH(build("md-tanh", 3), Catch::Contains("does not support 3 levels") && Catch::Contains("md-softmax (levels 2/3/4)"));
  REQUIRE_THROWS_WITH(build("md-tanh-s", 4), Catch::Contains("does not support 4 levels"));
  REQUIRE_THROWS_WITH(build("pmf", 5), Catch::Contains("does not support 5 levels"));
  REQUIRE_THROWS_WITH(build("md-tanh-s", 2, "rmsprop"), Catch::Contains("unknown direction 'rmsprop'"));
  REQUIRE(Quantizer::supported_methods().find("float (levels any)") != std::string::npos);
  for (const char* ok : {"float", "bc", "gd-tanh", "md-tanh-s", "md-tanh", "pmf", "md-softmax-s", "md-softmax"})
    REQUIRE_NOTHROW(build(ok, 2));
}

TEST_CASE("construction: primal from the initial weight; keep_float; softmax starts near w") {
  Tensor w = testing::random_tensor({2, 3}, 8, -0.2f, 0.2f);
  std::vector<float> wv = w.to_vector();
  for (const char* method : {"md-softmax-s", "md-softmax", "pmf"}) {
    QuantConfig cfg;
    cfg.method = method;
    cfg.beta0 = 1.f / cfg.rho;  // β = 1 at iteration 0
    nn::ParamRef p = param("w", w.clone());
    Quantizer q({p}, cfg);
    std::vector<float> x = p.var.value().to_vector();
    for (size_t i = 0; i < x.size(); ++i) REQUIRE(x[i] == Approx(std::tanh(wv[i])).margin(1e-6));  // binary: tanh(w)
  }
  QuantConfig cfg;
  nn::ParamRef pw = param("conv.weight", w.clone()), pb = param("conv.bias", w.clone());
  Quantizer q({pw, pb}, cfg, [](const nn::ParamRef& r) { return r.name.find("bias") != std::string::npos; });
  REQUIRE(q.params()[0].method.name() == "md-tanh-s");
  REQUIRE(q.params()[1].method.name() == "float");
  REQUIRE(pb.var.value().to_vector() == wv);
  for (size_t i = 0; i < wv.size(); ++i) REQUIRE(pw.var.value().to_vector()[i] == std::tanh(q.beta() * wv[i]));
}

TEST_CASE("rounded weights swap in for evaluation and the primal comes back bit for bit") {
  for (auto [method, K] : {std::pair{"md-tanh-s", 3}, {"md-softmax", 4}, {"bc", 2}, {"float", 2}}) {
    QuantConfig cfg;
    cfg.method = method;
    cfg.levels = K;
    nn::ParamRef p = param("w", testing::random_tensor({17}, 4, -1.f, 1.f));
    Quantizer q({p}, cfg);
    for (int t = 0; t < 5; ++t) {
      set_grad(p.var, testing::random_tensor({17}, 60 + t).to_vector());
      q.step(0.05f);
    }
    std::vector<float> before = p.var.value().to_vector();
    std::vector<float> rounded = q.rounded_weights()[0].second.to_vector();
    {
      Quantizer::RoundedScope scope(q);
      INFO(method << " levels " << K);
      REQUIRE(p.var.value().to_vector() == rounded);
      REQUIRE(q.rounded_weights()[0].second.to_vector() == rounded);
      REQUIRE_THROWS_WITH(q.step(0.1f), Catch::Contains("restore_primal"));
    }
    REQUIRE(p.var.value().to_vector() == before);
    if (std::string(method) == "float") REQUIRE(rounded == before);
  }
}

TEST_CASE("state and metadata resume training bit for bit") {
  for (auto [method, K] : {std::pair{"md-tanh-s", 2}, {"md-softmax", 3}, {"pmf", 4}, {"md-tanh", 2}}) {
    QuantConfig cfg;
    cfg.method = method;
    cfg.levels = K;
    cfg.interval = 3;
    cfg.rho = 1.3f;
    Tensor w = testing::random_tensor({4, 5}, 70, -0.3f, 0.3f);
    nn::ParamRef pa = param("a", w.clone()), pb = param("a", w.clone());
    Quantizer qa({pa}, cfg), qb({pb}, cfg);
    auto grad = [](int t) { return testing::random_tensor({4, 5}, 100 + t).to_vector(); };
    for (int t = 0; t < 7; ++t) {
      set_grad(pa.var, grad(t));
      qa.step(0.02f);
    }
    // Save a, load into b (b has a fresh state from the same init), then run both on.
    auto sa = qa.state(), sb = qb.state();
    REQUIRE(sa.size() == sb.size());
    for (size_t i = 0; i < sa.size(); ++i) {
      REQUIRE(sa[i].first == sb[i].first);
      sb[i].second->copy_from(*sa[i].second);
    }
    qb.load_state_metadata(qa.state_metadata());
    qb.refresh_primal();
    REQUIRE(qb.iteration() == qa.iteration());
    REQUIRE(qb.beta() == qa.beta());
    REQUIRE(pb.var.value().to_vector() == pa.var.value().to_vector());
    for (int t = 7; t < 12; ++t) {
      set_grad(pa.var, grad(t));
      set_grad(pb.var, grad(t));
      qa.step(0.02f);
      qb.step(0.02f);
    }
    INFO(method << " levels " << K);
    REQUIRE(pb.var.value().to_vector() == pa.var.value().to_vector());
    for (size_t i = 0; i < sa.size(); ++i) REQUIRE(sb[i].second->to_vector() == sa[i].second->to_vector());
  }
  QuantConfig cfg;
  Quantizer q({param("x", Tensor::zeros({2}))}, cfg);
  REQUIRE_THROWS_WITH(q.load_state_metadata("mdq-quantizer 1\niteration 3\nbeta 0x1p+0\ndirection adam\nparam y md-tanh-s 2 3\n"),
                      Catch::Contains("does not match"));
}

TEST_CASE("ternary parameters start with zeros and both signs, not all zeros") {
  // A Xavier-sized layer (|w| ≪ 0.5): unscaled, every weight would round to 0.
  const Tensor w = testing::random_tensor({64, 64, 3, 3}, 31, -0.05f, 0.05f);
  for (const char* method : {"md-softmax-s", "md-softmax", "pmf", "md-tanh-s", "gd-tanh", "bc"}) {
    INFO(method);
    QuantConfig cfg;
    cfg.method = method;
    cfg.levels = 3;
    std::vector<nn::ParamRef> params = {param("w", w.clone())};
    Quantizer q(params, cfg);
    q.apply_rounded();
    const std::vector<float> r = params[0].var.value().to_vector();
    q.restore_primal();
    int64_t zeros = 0, plus = 0, minus = 0;
    for (float x : r) {
      zeros += x == 0.f;
      plus += x == 1.f;
      minus += x == -1.f;
    }
    REQUIRE(zeros + plus + minus == static_cast<int64_t>(r.size()));
    // Softmax: argmax of three i.i.d. logits, a third zeros. The tanh family starts from w scaled
    // by 0.5/(0.7·mean|w|) and rounds the primal x, which at the first β (1.02) reaches 0.5 only
    // at x̃ ≈ 0.64: more zeros than the 35% of |w| < 0.7·mean|w|, still far from all.
    const double share = double(zeros) / double(r.size());
    const bool tanh_family = std::string(method).find("tanh") != std::string::npos;
    REQUIRE(share > 0.30);
    REQUIRE(share < (tanh_family ? 0.55 : 0.40));
    REQUIRE(std::abs(plus - minus) < static_cast<int64_t>(r.size()) / 20);
  }
  // Binary parameters keep starting from w itself (x̃ = w for MD-tanh-S).
  QuantConfig binary;
  std::vector<nn::ParamRef> params = {param("w", w.clone())};
  Quantizer q(params, binary);
  REQUIRE(q.params()[0].stored.to_vector() == w.to_vector());
}

TEST_CASE("ternary_start classifier-xavier leaves the logits layer (the last parameter's module) unscaled") {
  const Tensor conv = testing::random_tensor({8, 4, 3, 3}, 41, -0.05f, 0.05f);
  const Tensor fc_w = testing::random_tensor({10, 8}, 42, -0.05f, 0.05f), fc_b = testing::random_tensor({10}, 43);
  for (const char* start : {"scaled", "classifier-xavier"}) {
    INFO(start);
    QuantConfig cfg;
    cfg.levels = 3;
    cfg.ternary_start = start;
    Quantizer q({param("features.0.weight", conv.clone()), param("fc.weight", fc_w.clone()),
                 param("fc.bias", fc_b.clone())},
                cfg);
    auto mean_abs = [](const Tensor& t) {
      double s = 0;
      for (float x : t.to_vector()) s += std::fabs(x);
      return s / double(t.numel());
    };
    // md-tanh-s stores x̃: scaled to mean |x̃| = 0.5/0.7, or w itself.
    CHECK(mean_abs(q.params()[0].stored) == Approx(0.5 / 0.7).epsilon(1e-5));
    if (std::string(start) == "scaled") {
      CHECK(mean_abs(q.params()[1].stored) == Approx(0.5 / 0.7).epsilon(1e-5));
      CHECK(mean_abs(q.params()[2].stored) == Approx(0.5 / 0.7).epsilon(1e-5));
    } else {
      CHECK(q.params()[1].stored.to_vector() == fc_w.to_vector());
      CHECK(q.params()[2].stored.to_vector() == fc_b.to_vector());
    }
  }
  QuantConfig bad;
  bad.ternary_start = "xavier";
  REQUIRE_THROWS_WITH(Quantizer({param("w", conv.clone())}, bad), Catch::Contains("ternary_start 'xavier'"));
}

TEST_CASE("parameters stepped together step as they would alone: own Adam step counts, keep_float") {
  // a gets a grad every step, b every other step (its Adam t lags), c stays float. The quantizer
  // of all three groups them; each must end exactly where a quantizer of it alone ends.
  for (const char* method : {"md-tanh-s", "md-softmax-s"}) {
    QuantConfig cfg;
    cfg.method = method;
    cfg.interval = 2;  // β changes while b has no grad: b is re-projected, not stepped
    cfg.weight_decay = 1e-3f;
    auto keep_c = [](const nn::ParamRef& r) { return r.name == "c"; };
    const Shape shapes[] = {{5, 3}, {7}, {4}};
    const char* names[] = {"a", "b", "c"};
    std::vector<nn::ParamRef> together, alone;
    for (int i = 0; i < 3; ++i) {
      Tensor w = testing::random_tensor(shapes[i], 40 + i, -0.5f, 0.5f);
      together.push_back(param(names[i], w.clone()));
      alone.push_back(param(names[i], w.clone()));
    }
    Quantizer q(together, cfg, keep_c);
    std::vector<std::unique_ptr<Quantizer>> singles;
    for (int i = 0; i < 3; ++i) singles.push_back(std::make_unique<Quantizer>(std::vector<nn::ParamRef>{alone[i]}, cfg, keep_c));
    for (int t = 0; t < 6; ++t) {
      for (int i = 0; i < 3; ++i) {
        together[i].var.zero_grad();
        alone[i].var.zero_grad();
        if (i == 1 && t % 2 == 1) continue;
        Tensor g = testing::random_tensor(shapes[i], 100 * t + i);
        together[i].var.accumulate_grad(g);
        alone[i].var.accumulate_grad(g);
      }
      q.step(1e-2f);
      for (auto& s : singles) s->step(1e-2f);
    }
    for (int i = 0; i < 3; ++i) {
      INFO(method << " parameter " << names[i]);
      REQUIRE(q.params()[i].steps == singles[i]->params()[0].steps);
      REQUIRE(together[i].var.value().to_vector() == alone[i].var.value().to_vector());
      REQUIRE(q.params()[i].stored.to_vector() == singles[i]->params()[0].stored.to_vector());
      REQUIRE(q.params()[i].v.to_vector() == singles[i]->params()[0].v.to_vector());
    }
  }
}

TEST_CASE("ternary MD-softmax-S starts as md-bnn does: i.i.d. Xavier logits of the 3x widened layer; E6 moves them by q g") {
  // md-bnn (methods/softmax_projn.py init_weights, models/SimplexLayers.py): the layer holds
  // 3·out filters, xavier_uniform_ over them, biases N(0, 0.1²); u = softmax(β ũ) (β = 1 first).
  const int64_t out = 32, in = 16, kk = 3;
  const int64_t fan_in = in * kk * kk, fan_out = out * kk * kk;
  const double a = std::sqrt(6.0 / double(fan_in + 3 * fan_out));
  const Tensor w = testing::random_tensor({out, in, kk, kk}, 5, -0.1f, 0.1f);
  QuantConfig cfg;
  cfg.method = "md-softmax-s";
  cfg.levels = 3;
  cfg.seed = 7;
  nn::ParamRef pw{"conv.weight", Var(w.clone(), true), nn::ParamKind::Weight, fan_in, fan_out};
  nn::ParamRef pb{"conv.bias", Var(Tensor::zeros({out}), true), nn::ParamKind::Bias, fan_in, fan_out};
  Quantizer q({pw, pb}, cfg);
  const int64_t n = w.numel();
  const std::vector<float> s0 = q.params()[0].stored.to_vector();
  REQUIRE(static_cast<int64_t>(s0.size()) == 3 * n);
  double sum = 0, sum2 = 0;
  for (float v : s0) {
    REQUIRE(std::fabs(v) <= a);
    sum += v;
    sum2 += double(v) * v;
  }
  const double mean = sum / double(s0.size()), var = sum2 / double(s0.size()) - mean * mean;
  REQUIRE(std::fabs(mean) < 0.05 * a);
  REQUIRE(var == Approx(a * a / 3).epsilon(0.05));  // uniform on [−a, a]
  // Not taken from w: another w gives the same logits; the three planes are different draws.
  nn::ParamRef pw2{"conv.weight", Var(Tensor::zeros(w.shape()), true), nn::ParamKind::Weight, fan_in, fan_out};
  Quantizer q2({pw2}, cfg);
  REQUIRE(q2.params()[0].stored.to_vector() == s0);
  int same = 0;
  for (int64_t i = 0; i < n; ++i) same += s0[i] == s0[n + i] || s0[n + i] == s0[2 * n + i];
  REQUIRE(same < 3);
  // Biases: N(0, 0.1²) per level, not the zeros they held.
  const std::vector<float> b0 = q.params()[1].stored.to_vector();
  double bs2 = 0;
  for (float v : b0) bs2 += double(v) * v;
  REQUIRE(std::sqrt(bs2 / double(b0.size())) > 0.05);
  REQUIRE(std::sqrt(bs2 / double(b0.size())) < 0.15);
  // The first primal is x = Σ q_λ softmax(β ũ)_λ, small (|β ũ| ≪ 1), and the first rounded
  // network a uniform draw over {−1, 0, 1}.
  const std::vector<float> x0 = pw.var.value().to_vector();
  int64_t counts[3] = {0, 0, 0};
  for (int64_t i = 0; i < n; ++i) {
    double e[3], z = 0;
    for (int l = 0; l < 3; ++l) z += e[l] = std::exp(double(q.beta()) * s0[l * n + i]);
    REQUIRE(x0[i] == Approx((e[2] - e[0]) / z).margin(1e-6));
    REQUIRE(std::fabs(x0[i]) < 2 * a);
    int best = 0;
    for (int l = 1; l < 3; ++l)
      if (s0[l * n + i] > s0[best * n + i]) best = l;
    ++counts[best];
  }
  for (int64_t c : counts) REQUIRE(std::fabs(double(c) / double(n) - 1.0 / 3) < 0.03);
  // One E6 step with Adam from zero moments: the direction of plane λ is m̂/(√v̂ + ε) of q_λ g,
  // i.e. sign(q_λ g): ũ_{−1} moves by +η sign g, ũ_0 stays, ũ_{+1} moves by −η sign g.
  std::vector<float> g(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) g[i] = (i % 3 == 0 ? -1.f : 1.f) * (0.01f + 0.001f * float(i % 7));
  set_grad(pw.var, g);
  const float lr = 1e-3f;
  q.step(lr);
  const std::vector<float> s1 = q.params()[0].stored.to_vector();
  for (int64_t i = 0; i < n; ++i) {
    const float sg = g[i] > 0 ? 1.f : -1.f;
    REQUIRE(s1[i] == Approx(s0[i] + lr * sg).margin(1e-7));
    REQUIRE(s1[n + i] == s0[n + i]);
    REQUIRE(s1[2 * n + i] == Approx(s0[2 * n + i] - lr * sg).margin(1e-7));
  }
}

// mdq's one optimizer, the Quantizer's E8 direction, on the float method (where it is plain
// SGD or Adam): against hand-computed values (PyTorch semantics, worked in double by script),
// a quadratic minimised through autograd, its state, its argument checks; and the trainer's
// learning-rate schedule.
#include "engine/nn/functional.h"
#include "engine/optim/schedule.h"
#include "engine/quant/quantizer.h"
#include "tests/support/testing.h"

using namespace mdq;
using quant::QuantConfig;
using quant::Quantizer;

namespace {

// w0 = [1, -2]; the grads of steps 1..3 are fixed below; lr = 0.1.
const std::vector<std::vector<float>> kGrads = {{0.5f, -1.0f}, {-0.25f, 2.0f}, {1.0f, 0.5f}};

nn::ParamRef make_param(const std::string& name, std::vector<float> values) {
  const int64_t n = static_cast<int64_t>(values.size());
  return nn::ParamRef{name, Var(Tensor::from_vector(values, {n}), true), nn::ParamKind::Weight, n, n};
}

QuantConfig float_config(const std::string& direction, float momentum = 0, float weight_decay = 0) {
  QuantConfig cfg;
  cfg.method = "float";
  cfg.direction = direction;
  cfg.momentum = momentum;
  cfg.weight_decay = weight_decay;
  return cfg;
}

// Runs three steps with kGrads and checks w after each against expected[step].
void check_three_steps(Quantizer& q, const Var& w, const std::vector<std::vector<float>>& expected,
                       const std::string& what) {
  for (size_t s = 0; s < 3; ++s) {
    q.zero_grad();
    w.accumulate_grad(Tensor::from_vector(kGrads[s], {2}));
    q.step(0.1f);
    testing::require_close(w.value(), Tensor::from_vector(expected[s], {2}), 1e-6f, 1e-6f,
                           what + " after step " + std::to_string(s + 1));
  }
}

}  // namespace

TEST_CASE("E8 SGD matches hand-computed steps: plain, momentum, weight decay") {
  struct Case {
    const char* name;
    float momentum, weight_decay;
    std::vector<std::vector<float>> expected;
  };
  const std::vector<Case> cases = {
      {"plain", 0, 0, {{0.95f, -1.9f}, {0.975f, -2.1f}, {0.875f, -2.15f}}},
      {"momentum 0.9", 0.9f, 0, {{0.95f, -1.9f}, {0.93f, -2.01f}, {0.812f, -2.159f}}},
      {"weight decay 0.1", 0, 0.1f, {{0.94f, -1.88f}, {0.9556f, -2.0612f}, {0.846044f, -2.090588f}}},
      {"momentum 0.9 + weight decay 0.1", 0.9f, 0.1f, {{0.94f, -1.88f}, {0.9016f, -1.9532f}, {0.758024f, -2.049548f}}},
  };
  for (const Case& c : cases) {
    nn::ParamRef p = make_param("w", {1.0f, -2.0f});
    Quantizer q({p}, float_config("sgd", c.momentum, c.weight_decay));
    check_three_steps(q, p.var, c.expected, std::string("SGD ") + c.name);
  }
}

TEST_CASE("E8 Adam matches hand-computed steps, moments included") {
  SECTION("no weight decay") {
    nn::ParamRef p = make_param("w", {1.0f, -2.0f});
    Quantizer q({p}, float_config("adam"));
    check_three_steps(q, p.var, {{0.900000002f, -1.900000001f}, {0.8733662987f, -1.9366103535f}, {0.8075551397f, -1.9781754731f}},
                      "Adam");
    const quant::QuantParam& s = q.params()[0];
    REQUIRE(s.steps == 3);
    testing::require_close(s.m, Tensor::from_vector({0.118f, 0.149f}, {2}), 1e-7f, 1e-5f, "m");
    // rtol 3e-5: the expected values use beta2 = 0.999 exactly, the optimizer the float 0.999f,
    // whose 1 - beta2 is 1.3e-5 smaller (w is insensitive: the bias correction cancels it).
    testing::require_close(s.v, Tensor::from_vector({0.00131193775f, 0.005244001f}, {2}), 1e-9f, 3e-5f, "v");
  }
  SECTION("weight decay 0.1") {
    nn::ParamRef p = make_param("w", {1.0f, -2.0f});
    Quantizer q({p}, float_config("adam", 0, 0.1f));
    check_three_steps(q, p.var,
                      {{0.9000000017f, -1.9000000008f}, {0.8544413675f, -1.9250178785f}, {0.7815043999f, -1.9531272707f}},
                      "Adam with weight decay");
  }
}

TEST_CASE("parameters without a grad are skipped and keep their state") {
  nn::ParamRef a = make_param("a", {1.0f, -2.0f}), b = make_param("b", {3.0f});
  Quantizer q({a, b}, float_config("adam"));
  a.var.accumulate_grad(Tensor::from_vector(kGrads[0], {2}));
  q.step(0.1f);
  REQUIRE(b.var.value().to_vector() == std::vector<float>{3.0f});
  REQUIRE(q.params()[1].m.to_vector() == std::vector<float>{0.0f});
  // b's first update uses bias correction for t = 1 (its own count), as PyTorch does: a full lr step.
  q.zero_grad();
  REQUIRE_FALSE(a.var.has_grad());
  b.var.accumulate_grad(Tensor::from_vector({2.0f}, {1}));
  q.step(0.1f);
  REQUIRE(b.var.value().item() == Approx(2.9).epsilon(1e-6));
  REQUIRE(q.iteration() == 2);
  REQUIRE(q.params()[0].steps == 1);
  REQUIRE(q.params()[1].steps == 1);
}

TEST_CASE("SGD with momentum and Adam minimise a quadratic through autograd") {
  // L(w) = sum(c * (w - t)^2), minimum at t.
  const Tensor target = Tensor::from_vector({0.5f, -1.5f, 2.0f, 0.0f}, {4});
  const Var t(target), c(Tensor::from_vector({1.0f, 2.0f, 0.5f, 4.0f}, {4}));
  auto loss_of = [&](const Var& w) {
    Var d = nn::sub(w, t);
    return nn::sum(nn::mul(c, nn::mul(d, d)));
  };
  auto run = [&](const QuantConfig& cfg, int iters, float lr) {
    nn::ParamRef p = make_param("w", {3.0f, 3.0f, -3.0f, 1.0f});
    Quantizer q({p}, cfg);
    const float initial = loss_of(p.var).value().item();
    for (int i = 0; i < iters; ++i) {
      q.zero_grad();
      backward(loss_of(p.var));
      q.step(lr);
    }
    const float final_loss = loss_of(p.var).value().item();
    INFO(cfg.direction << ": loss " << initial << " -> " << final_loss);
    REQUIRE(final_loss < 1e-6f * initial);
    testing::require_close(p.var.value(), target, 1e-3f, 0, "minimiser");
  };
  run(float_config("sgd", 0.9f), 300, 0.02f);
  run(float_config("adam"), 2000, 0.05f);
}

TEST_CASE("optimizer state round-trips through copy_from and continues identically") {
  nn::ParamRef p = make_param("w", {1.0f, -2.0f});
  Quantizer a({p}, float_config("sgd", 0.9f));
  p.var.accumulate_grad(Tensor::from_vector(kGrads[0], {2}));
  a.step(0.1f);
  nn::ParamRef q = make_param("w", {1.0f, -2.0f});
  Quantizer b({q}, float_config("sgd", 0.9f));
  auto sa = a.state(), sb = b.state();
  REQUIRE(sa.size() == 2);  // the stored variable and the momentum buffer
  for (size_t i = 0; i < sa.size(); ++i) {
    REQUIRE(sa[i].first == sb[i].first);
    sb[i].second->copy_from(*sa[i].second);
  }
  b.load_state_metadata(a.state_metadata());
  b.refresh_primal();
  q.var.accumulate_grad(Tensor::from_vector(kGrads[1], {2}));
  p.var.zero_grad();
  p.var.accumulate_grad(Tensor::from_vector(kGrads[1], {2}));
  a.step(0.1f);
  b.step(0.1f);
  REQUIRE(q.var.value().to_vector() == p.var.value().to_vector());  // momentum carried over, not restarted
}

TEST_CASE("the optimizer refuses bad hyper-parameters and a parameter listed twice, naming it") {
  nn::ParamRef p = make_param("layer.weight", {1.0f, 2.0f});
  QuantConfig betas = float_config("adam");
  betas.adam_beta1 = 1.0f;
  REQUIRE_THROWS_WITH(Quantizer({p}, betas), Catch::Contains("betas"));
  REQUIRE_THROWS_WITH(Quantizer({p}, float_config("sgd", -0.5f)), Catch::Contains("momentum"));
  REQUIRE_THROWS_WITH(Quantizer({p}, float_config("adam", 0, -1e-4f)), Catch::Contains("weight_decay"));
  REQUIRE_THROWS_WITH(Quantizer({p, p}, float_config("adam")),
                      Catch::Contains("layer.weight") && Catch::Contains("twice"));
  REQUIRE_THROWS_WITH(Quantizer({p}, float_config("lamb")), Catch::Contains("unknown direction 'lamb'"));
}

TEST_CASE("the trainer's lr schedule multiplies by gamma at each milestone") {
  optim::MultiStepLr multi(0.1f, {100, 150}, 0.1f);
  REQUIRE(multi.lr(0) == 0.1f);
  REQUIRE(multi.lr(99) == 0.1f);
  REQUIRE(multi.lr(100) == Approx(0.01).epsilon(1e-6));
  REQUIRE(multi.lr(149) == Approx(0.01).epsilon(1e-6));
  REQUIRE(multi.lr(150) == Approx(0.001).epsilon(1e-6));
  REQUIRE(multi.lr(1000000) == Approx(0.001).epsilon(1e-6));
  // The reference recipe: 1e-3, × 0.3 every 30k iterations.
  optim::MultiStepLr recipe(1e-3f, {30000, 60000, 90000}, 0.3f);
  REQUIRE(recipe.lr(29999) == 1e-3f);
  REQUIRE(recipe.lr(30000) == Approx(3e-4).epsilon(1e-6));
  REQUIRE(recipe.lr(60000) == Approx(9e-5).epsilon(1e-6));
  REQUIRE(recipe.lr(99999) == Approx(2.7e-5).epsilon(1e-6));
  REQUIRE(optim::MultiStepLr(0.5f, {}, 0.1f).lr(1000000) == 0.5f);  // no milestones: constant
  REQUIRE_THROWS_WITH(optim::MultiStepLr(0.1f, {150, 100}, 0.1f), Catch::Contains("increasing"));
  REQUIRE_THROWS_WITH(optim::MultiStepLr(0.1f, {100}, 0.f), Catch::Contains("gamma > 0"));
}

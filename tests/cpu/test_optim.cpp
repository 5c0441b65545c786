// SGD and Adam against hand-computed values (PyTorch semantics, worked in double by hand/script),
// a quadratic minimised through autograd, optimizer state, and learning-rate schedules.
#include "engine/nn/functional.h"
#include "engine/optim/adam.h"
#include "engine/optim/schedule.h"
#include "engine/optim/sgd.h"
#include "tests/support/testing.h"

using namespace mdq;

namespace {

// w0 = [1, -2]; the grads of steps 1..3 are fixed below; lr = 0.1.
const std::vector<std::vector<float>> kGrads = {{0.5f, -1.0f}, {-0.25f, 2.0f}, {1.0f, 0.5f}};

nn::ParamRef make_param(const std::string& name, std::vector<float> values) {
  const int64_t n = static_cast<int64_t>(values.size());
  return nn::ParamRef{name, Var(Tensor::from_vector(values, {n}), true), nn::ParamKind::Weight, n, n};
}

// Runs three steps with kGrads and checks w after each against expected[step].
void check_three_steps(optim::Optimizer& opt, const Var& w, const std::vector<std::vector<float>>& expected,
                       const std::string& what) {
  for (size_t s = 0; s < 3; ++s) {
    opt.zero_grad();
    w.accumulate_grad(Tensor::from_vector(kGrads[s], {2}));
    opt.step(0.1f);
    testing::require_close(w.value(), Tensor::from_vector(expected[s], {2}), 1e-6f, 1e-6f,
                           what + " after step " + std::to_string(s + 1));
  }
}

Tensor state_named(optim::Optimizer& opt, const std::string& name) {
  for (auto& [n, t] : opt.state())
    if (n == name) return *t;
  FAIL("no optimizer state named " << name);
  return {};
}

}  // namespace

TEST_CASE("SGD matches hand-computed steps: plain, momentum, nesterov, weight decay") {
  struct Case {
    const char* name;
    optim::SGDOptions options;
    std::vector<std::vector<float>> expected;
  };
  const std::vector<Case> cases = {
      {"plain", {0, 0, false}, {{0.95f, -1.9f}, {0.975f, -2.1f}, {0.875f, -2.15f}}},
      {"momentum 0.9", {0.9f, 0, false}, {{0.95f, -1.9f}, {0.93f, -2.01f}, {0.812f, -2.159f}}},
      {"nesterov 0.9", {0.9f, 0, true}, {{0.905f, -1.81f}, {0.912f, -2.109f}, {0.7058f, -2.2931f}}},
      {"weight decay 0.1", {0, 0.1f, false}, {{0.94f, -1.88f}, {0.9556f, -2.0612f}, {0.846044f, -2.090588f}}},
      {"nesterov 0.9 + weight decay 0.1",
       {0.9f, 0.1f, true},
       {{0.886f, -1.772f}, {0.868066f, -2.021132f}, {0.630906146f, -2.137897292f}}},
  };
  for (const Case& c : cases) {
    nn::ParamRef p = make_param("w", {1.0f, -2.0f});
    optim::SGD sgd({p}, c.options);
    check_three_steps(sgd, p.var, c.expected, std::string("SGD ") + c.name);
  }
}

TEST_CASE("Adam matches hand-computed steps, moments included") {
  SECTION("no weight decay") {
    nn::ParamRef p = make_param("w", {1.0f, -2.0f});
    optim::Adam adam({p}, {});
    check_three_steps(adam, p.var, {{0.900000002f, -1.900000001f}, {0.8733662987f, -1.9366103535f}, {0.8075551397f, -1.9781754731f}},
                      "Adam");
    REQUIRE(adam.steps() == 3);
    testing::require_close(state_named(adam, "optim.exp_avg.w"), Tensor::from_vector({0.118f, 0.149f}, {2}), 1e-7f,
                           1e-5f, "m");
    // rtol 3e-5: the expected values use beta2 = 0.999 exactly, the optimizer the float 0.999f,
    // whose 1 - beta2 is 1.3e-5 smaller (w is insensitive: the bias correction cancels it).
    testing::require_close(state_named(adam, "optim.exp_avg_sq.w"),
                           Tensor::from_vector({0.00131193775f, 0.005244001f}, {2}), 1e-9f, 3e-5f, "v");
  }
  SECTION("weight decay 0.1") {
    nn::ParamRef p = make_param("w", {1.0f, -2.0f});
    optim::Adam adam({p}, {0.9f, 0.999f, 1e-8f, 0.1f});
    check_three_steps(adam, p.var,
                      {{0.9000000017f, -1.9000000008f}, {0.8544413675f, -1.9250178785f}, {0.7815043999f, -1.9531272707f}},
                      "Adam with weight decay");
  }
}

TEST_CASE("parameters without a grad are skipped and keep their state") {
  nn::ParamRef a = make_param("a", {1.0f, -2.0f}), b = make_param("b", {3.0f});
  optim::Adam adam({a, b}, {});
  a.var.accumulate_grad(Tensor::from_vector(kGrads[0], {2}));
  adam.step(0.1f);
  REQUIRE(b.var.value().to_vector() == std::vector<float>{3.0f});
  REQUIRE(state_named(adam, "optim.exp_avg.b").to_vector() == std::vector<float>{0.0f});
  // b's first update uses bias correction for t = 1 (its own count), as PyTorch does: a full lr step.
  adam.zero_grad();
  REQUIRE_FALSE(a.var.has_grad());
  b.var.accumulate_grad(Tensor::from_vector({2.0f}, {1}));
  adam.step(0.1f);
  REQUIRE(b.var.value().item() == Approx(2.9).epsilon(1e-6));
  REQUIRE(adam.steps() == 2);
  REQUIRE(state_named(adam, "optim.steps").to_vector_i32() == std::vector<int32_t>{2, 1, 1});
}

TEST_CASE("SGD and Adam minimise a quadratic through autograd") {
  // L(w) = sum(c * (w - t)^2), minimum at t.
  const Tensor target = Tensor::from_vector({0.5f, -1.5f, 2.0f, 0.0f}, {4});
  const Var t(target), c(Tensor::from_vector({1.0f, 2.0f, 0.5f, 4.0f}, {4}));
  auto loss_of = [&](const Var& w) {
    Var d = nn::sub(w, t);
    return nn::sum(nn::mul(c, nn::mul(d, d)));
  };
  auto run = [&](optim::Optimizer& opt, const Var& w, int iters, float lr) {
    const float initial = loss_of(w).value().item();
    for (int i = 0; i < iters; ++i) {
      opt.zero_grad();
      backward(loss_of(w));
      opt.step(lr);
    }
    const float final_loss = loss_of(w).value().item();
    INFO("loss " << initial << " -> " << final_loss);
    REQUIRE(final_loss < 1e-6f * initial);
    testing::require_close(w.value(), target, 1e-3f, 0, "minimiser");
  };
  nn::ParamRef p1 = make_param("w", {3.0f, 3.0f, -3.0f, 1.0f});
  optim::SGD sgd({p1}, {0.9f, 0, true});
  run(sgd, p1.var, 300, 0.02f);
  nn::ParamRef p2 = make_param("w", {3.0f, 3.0f, -3.0f, 1.0f});
  optim::Adam adam({p2}, {});
  run(adam, p2.var, 2000, 0.05f);
}

TEST_CASE("optimizer state round-trips through copy_from and continues identically") {
  nn::ParamRef p = make_param("w", {1.0f, -2.0f});
  optim::SGD a({p}, {0.9f, 0, false});
  p.var.accumulate_grad(Tensor::from_vector(kGrads[0], {2}));
  a.step(0.1f);
  nn::ParamRef q = make_param("w", p.var.value().to_vector());
  optim::SGD b({q}, {0.9f, 0, false});
  auto sa = a.state(), sb = b.state();
  REQUIRE(sa.size() == 2);
  for (size_t i = 0; i < sa.size(); ++i) {
    REQUIRE(sa[i].first == sb[i].first);
    sb[i].second->copy_from(*sa[i].second);
  }
  q.var.accumulate_grad(Tensor::from_vector(kGrads[1], {2}));
  p.var.zero_grad();
  p.var.accumulate_grad(Tensor::from_vector(kGrads[1], {2}));
  a.step(0.1f);
  b.step(0.1f);
  REQUIRE(q.var.value().to_vector() == p.var.value().to_vector());  // momentum carried over, not restarted
}

TEST_CASE("optimizers refuse bad options and mismatched grads, naming the parameter") {
  nn::ParamRef p = make_param("layer.weight", {1.0f, 2.0f});
  REQUIRE_THROWS_WITH(optim::SGD({p}, {0, 0, true}), Catch::Contains("nesterov"));
  REQUIRE_THROWS_WITH(optim::Adam({p}, {1.0f, 0.999f, 1e-8f, 0}), Catch::Contains("betas"));
  REQUIRE_THROWS_WITH(optim::Adam({p, p}, {}), Catch::Contains("layer.weight") && Catch::Contains("twice"));
}

TEST_CASE("lr schedules give the right lr at their boundaries") {
  optim::StepLr step(1e-3f, 30000, 0.3f);
  REQUIRE(step.lr(0) == 1e-3f);
  REQUIRE(step.lr(29999) == 1e-3f);
  REQUIRE(step.lr(30000) == Approx(3e-4).epsilon(1e-6));
  REQUIRE(step.lr(59999) == Approx(3e-4).epsilon(1e-6));
  REQUIRE(step.lr(60000) == Approx(9e-5).epsilon(1e-6));
  REQUIRE(step.lr(99999) == Approx(2.7e-5).epsilon(1e-6));

  optim::MultiStepLr multi(0.1f, {100, 150}, 0.1f);
  REQUIRE(multi.lr(0) == 0.1f);
  REQUIRE(multi.lr(99) == 0.1f);
  REQUIRE(multi.lr(100) == Approx(0.01).epsilon(1e-6));
  REQUIRE(multi.lr(149) == Approx(0.01).epsilon(1e-6));
  REQUIRE(multi.lr(150) == Approx(0.001).epsilon(1e-6));
  REQUIRE(multi.lr(1000000) == Approx(0.001).epsilon(1e-6));
  REQUIRE_THROWS_WITH(optim::MultiStepLr(0.1f, {150, 100}, 0.1f), Catch::Contains("increasing"));

  optim::CosineLr cosine(0.1f, 100, 0.001f);
  REQUIRE(cosine.lr(0) == 0.1f);
  REQUIRE(cosine.lr(50) == Approx(0.0505).epsilon(1e-6));
  REQUIRE(cosine.lr(25) == Approx(0.001 + 0.099 * 0.5 * (1 + std::cos(3.14159265358979 / 4))).epsilon(1e-6));
  REQUIRE(cosine.lr(100) == 0.001f);
  REQUIRE(cosine.lr(500) == 0.001f);
  REQUIRE(optim::CosineLr(1.0f, 10).lr(10) == 0.0f);
}

TEST_CASE("make_schedule reads specs, round-trips describe(), and explains bad ones") {
  REQUIRE(optim::make_schedule("0.01")->lr(12345) == 0.01f);
  REQUIRE(optim::make_schedule("constant:0.5")->lr(7) == 0.5f);
  auto step = optim::make_schedule("step:0.001:30000:0.3");
  REQUIRE(step->lr(30000) == Approx(3e-4).epsilon(1e-6));
  REQUIRE(optim::make_schedule(step->describe())->lr(60000) == step->lr(60000));
  auto multi = optim::make_schedule("multistep:0.1:100,150:0.1");
  REQUIRE(multi->lr(150) == Approx(0.001).epsilon(1e-6));
  REQUIRE(multi->describe() == "multistep:0.1:100,150:0.1");
  auto cosine = optim::make_schedule("cosine:0.1:100");
  REQUIRE(cosine->lr(100) == 0.0f);
  REQUIRE(optim::make_schedule("cosine:0.1:100:0.01")->lr(100) == 0.01f);
  REQUIRE_THROWS_WITH(optim::make_schedule("step:0.001:30000"), Catch::Contains("step:0.001:30000") &&
                                                                     Catch::Contains("step:LR:STEP:GAMMA"));
  REQUIRE_THROWS_WITH(optim::make_schedule("warmup:1"), Catch::Contains("unknown kind 'warmup'"));
  REQUIRE_THROWS_WITH(optim::make_schedule("step:abc:10:0.1"), Catch::Contains("'abc' is not a number"));
  REQUIRE_THROWS_WITH(optim::make_schedule("step:0.1:10.5:0.1"), Catch::Contains("not an integer"));
}

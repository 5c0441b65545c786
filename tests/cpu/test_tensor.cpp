// Tensor basics, seeded random init, autograd mechanics and error messages on the CPU (the
// elementwise ops themselves are in the op table, tests/ops/).
#include "engine/device.h"
#include "engine/nn/functional.h"
#include "tests/support/testing.h"

using namespace mdq;

TEST_CASE("tensor creation, reshape and copies") {
  Tensor t = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  REQUIRE(t.numel() == 6);
  REQUIRE(t.dim(-1) == 3);
  REQUIRE(t.describe() == "f32[2, 3]@cpu");
  Tensor r = t.reshape({3, -1});
  REQUIRE(r.shape() == Shape{3, 2});
  REQUIRE(r.to_vector() == t.to_vector());
  Tensor c = t.clone();
  c.fill_(7.f);
  REQUIRE(t.to_vector()[0] == 1.f);
  REQUIRE_THROWS_WITH(t.reshape({4, 2}), Catch::Contains("cannot view f32[2, 3]@cpu as [4, 2]"));
}

TEST_CASE("a window shares its tensor's storage and outlives the tensor") {
  Tensor w;
  {
    Tensor t = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {6});
    w = t.window(2, {2, 1});
    REQUIRE(w.shape() == Shape{2, 1});
    REQUIRE(w.to_vector() == std::vector<float>{3, 4});
    w.fill_(9.f);
    REQUIRE(t.to_vector() == std::vector<float>{1, 2, 9, 9, 5, 6});
    REQUIRE_THROWS_WITH(t.window(5, {2}), Catch::Contains("elements [5, 7) outside f32[6]@cpu"));
  }
  REQUIRE(w.to_vector() == std::vector<float>{9, 9});  // the block stays while a window holds it
}

TEST_CASE("replace_grad moves a gradient without counting a contribution") {
  Var v(Tensor::from_vector({1, 2}, {2}), true);
  int hooks = 0;
  v.set_grad_hook([&] { ++hooks; });
  v.accumulate_grad(Tensor::from_vector({3, 4}, {2}));
  v.replace_grad(Tensor::from_vector({5, 6}, {2}));
  REQUIRE(hooks == 1);
  REQUIRE(v.grad().to_vector() == std::vector<float>{5, 6});
  REQUIRE_THROWS_WITH(v.replace_grad(Tensor::from_vector({1, 2, 3}, {3})), Catch::Contains("accumulate_grad"));
}

TEST_CASE("seeded random tensors repeat for a seed and differ across seeds") {
  Tensor a = Tensor::uniform({1000}, -1, 1, 42), b = Tensor::uniform({1000}, -1, 1, 42);
  Tensor c = Tensor::uniform({1000}, -1, 1, 43);
  REQUIRE(a.to_vector() == b.to_vector());
  REQUIRE(a.to_vector() != c.to_vector());
  std::vector<float> n = Tensor::normal({20000}, 0, 2, 7).to_vector();
  double mean = 0, var = 0;
  for (float x : n) mean += x;
  mean /= n.size();
  for (float x : n) var += (x - mean) * (x - mean);
  var /= n.size();
  REQUIRE(std::fabs(mean) < 0.05);
  REQUIRE(std::fabs(std::sqrt(var) - 2.0) < 0.05);
}

TEST_CASE("a CUDA tensor without a GPU is a clear error") {
  if (cuda_available()) return;  // only meaningful where there is no GPU
  REQUIRE_THROWS_WITH(Tensor::zeros({4}, DType::F32, Device::CUDA), Catch::Contains("cannot allocate a CUDA tensor"));
}

TEST_CASE("autograd accumulates through a shared input and clears its tape") {
  Var x(Tensor::from_vector({1, 2, 3}, {3}), true);
  Var y = nn::sum(nn::add(nn::mul(x, x), x));  // sum(x^2 + x): grad = 2x + 1
  backward(y);
  REQUIRE(x.grad().to_vector() == std::vector<float>{3, 5, 7});
  REQUIRE(tape_size() == 0);
  {
    NoGradScope no_grad;
    Var z = nn::mul(x, x);
    REQUIRE_FALSE(z.requires_grad());
    REQUIRE(tape_size() == 0);
  }
}

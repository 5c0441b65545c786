// Op table entries for the elementwise ops: add, sub, mul, add_relu, scale and the full sum through their
// nn:: versions (their backward lives in autograd), and the in-place axpy_; naive references.
#include <algorithm>
#include <cmath>
#include <functional>

#include "engine/nn/functional.h"
#include "engine/ops/elementwise.h"
#include "tests/ops/naive.h"
#include "tests/ops/op_table.h"
#include "tests/support/inputs.h"

namespace mdq::optest {
namespace {

constexpr float kScale = 1.5f, kAlpha = -0.25f;

// `arity` random inputs of n elements and one output; the caller adds what the op computes.
OpCase elementwise_case(const char* op, const std::string& label, int arity, int64_t n, uint64_t seed) {
  Tensors inputs;
  for (int i = 0; i < arity; ++i) inputs.push_back(testing::random_tensor({n}, seed + i));
  return make_case(op, label + " [" + std::to_string(n) + "]", inputs, {"out"});
}

// One float operation per element: every backend gives the same bits, gradients included.
struct Binary {
  const char* op;
  Var (*layer)(const Var&, const Var&);
  float (*reference)(float, float);
};

OpCase binary_case(const Binary& f, int64_t n, uint64_t seed) {
  OpCase c = elementwise_case(f.op, f.op, 2, n, seed);
  c.wrt = {0, 1};
  from_layer(c, [layer = f.layer](std::vector<Var>& v) { return layer(v[0], v[1]); });
  c.reference = [ref = f.reference](const Tensors& in) {
    const float* b = in[1].data<float>();
    return Tensors{naive_map(in[0], [&](float a, int64_t i) { return ref(a, b[i]); })};
  };
  c.tolerances[Precision::FP32] = {{Bound{}}, {Bound{}}};
  return c;
}

// relu(a + b) (nn::add_relu, the residual block's sum and activation). b is nudged so that
// |a + b| >= 0.05 everywhere: finite differences (step 1e-2) stay on one side of the kink.
OpCase add_relu_case(int64_t n, uint64_t seed) {
  OpCase c = binary_case({"add_relu", nn::add_relu, [](float a, float b) { return std::max(a + b, 0.f); }}, n, seed);
  float* a = c.inputs[0].data<float>();
  float* b = c.inputs[1].data<float>();
  for (int64_t i = 0; i < n; ++i)
    if (std::fabs(a[i] + b[i]) < 0.05f) b[i] += a[i] + b[i] < 0.f ? -0.05f : 0.05f;
  return c;
}

OpCase scale_case(int64_t n, uint64_t seed) {
  OpCase c = elementwise_case("scale", "scale by 1.5", 1, n, seed);
  c.wrt = {0};
  from_layer(c, [](std::vector<Var>& v) { return nn::scale(v[0], kScale); });
  c.reference = [](const Tensors& in) {
    return Tensors{naive_map(in[0], [](float a, int64_t) { return a * kScale; })};
  };
  c.tolerances[Precision::FP32] = {{Bound{}}, {Bound{}}};
  return c;
}

// GPU bound 1e-4 abs + 1e-5 rel: a float block sum against the CPU's double sum.
OpCase sum_case(int64_t n, uint64_t seed) {
  OpCase c = elementwise_case("sum_all", "sum_all", 1, n, seed);
  c.wrt = {0};
  from_layer(c, [](std::vector<Var>& v) { return nn::sum(v[0]); });
  c.reference = [](const Tensors& in) {
    return Tensors{to_tensor(bucket_sums(in[0], 1, [](int64_t) { return 0; }), {1})};
  };
  c.reference_bound = {1e-6f, 1e-6f};
  c.tolerances[Precision::FP32] = {{Bound{1e-4f, 1e-5f}}, {Bound{}}};
  return c;
}

// y += alpha x in place (the optimizers' update); GPU bound 1e-6 abs (FMA or not).
OpCase axpy_case(int64_t n, uint64_t seed) {
  OpCase c = elementwise_case("axpy_", "axpy_ alpha -0.25", 2, n, seed);
  c.forward = [](const Tensors& in) {
    Tensor y = in[0].clone();
    ops::axpy_(y, kAlpha, in[1]);
    return Tensors{y};
  };
  c.reference = [](const Tensors& in) {
    const float* x = in[1].data<float>();
    return Tensors{naive_map(in[0], [x](float y, int64_t i) { return y + kAlpha * x[i]; })};
  };
  c.reference_bound = {1e-6f, 0};
  c.tolerances[Precision::FP32] = {{Bound{1e-6f, 0}}, {}};
  return c;
}

}  // namespace

void add_elementwise_cases(std::vector<OpCase>& table, bool perf) {
  const Binary binaries[] = {
      {"add", nn::add, [](float a, float b) { return a + b; }},
      {"sub", nn::sub, [](float a, float b) { return a - b; }},
      {"mul", nn::mul, [](float a, float b) { return a * b; }},
  };
  uint64_t seed = 6000;
  for (int64_t n : perf ? std::vector<int64_t>{1 << 22} : std::vector<int64_t>{1, 7, 1000, 65537}) {
    for (const Binary& f : binaries) table.push_back(binary_case(f, n, seed += 10));
    table.push_back(add_relu_case(n, seed += 10));
    table.push_back(scale_case(n, seed += 10));
    table.push_back(sum_case(n, seed += 10));
    table.push_back(axpy_case(n, seed += 10));
  }
}

}  // namespace mdq::optest

// Helpers shared by the tests: random inputs (never zeros), poisoned outputs, closeness checks
// with a stated tolerance, and central finite differences for backward checks.
#pragma once
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/tensor.h"

namespace mdq::testing {

// Uniform in [lo, hi) with no element closer to zero than 1e-3 (random inputs, never zeros).
inline Tensor random_tensor(const Shape& shape, uint64_t seed, float lo = -1.f, float hi = 1.f,
                            Device device = Device::CPU) {
  Tensor t = Tensor::uniform(shape, lo, hi, seed, Device::CPU);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i)
    if (std::fabs(p[i]) < 1e-3f) p[i] = p[i] < 0 ? -1e-3f : 1e-3f;
  return t.to(device);
}

// ±1 values: the sign of a random tensor (never zero), for binary weights and activations.
inline Tensor random_signs(const Shape& shape, uint64_t seed) {
  Tensor t = random_tensor(shape, seed);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = p[i] >= 0.f ? 1.f : -1.f;
  return t;
}

// Values in {-1, 0, 1}, about a third each, for ternary weights.
inline Tensor random_ternary(const Shape& shape, uint64_t seed) {
  Tensor t = random_tensor(shape, seed);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = p[i] > 0.33f ? 1.f : p[i] < -0.33f ? -1.f : 0.f;
  return t;
}

// Fills a tensor with NaN so any element an op forgets to write fails the comparison.
inline void poison(Tensor& t) { t.fill_(std::numeric_limits<float>::quiet_NaN()); }

// max |a - b| / (atol + rtol |b|) <= 1 elementwise; reports the worst element on failure.
inline void require_close(const Tensor& actual, const Tensor& expected, float atol, float rtol,
                          const std::string& what = "") {
  REQUIRE(actual.shape() == expected.shape());
  std::vector<float> a = actual.to_vector(), b = expected.to_vector();
  size_t worst = 0;
  double worst_ratio = -1.0;
  for (size_t i = 0; i < a.size(); ++i) {
    // Exact equality always passes (so atol = rtol = 0 asks for bit-equal values); a NaN never does.
    double diff = std::fabs(static_cast<double>(a[i]) - b[i]);
    double ratio = a[i] == b[i] ? 0.0 : std::isnan(diff) ? std::numeric_limits<double>::infinity()
                                                         : diff / (atol + rtol * std::fabs(b[i]));
    if (ratio > worst_ratio) {
      worst_ratio = ratio;
      worst = i;
    }
  }
  INFO(what << " worst element " << worst << ": got " << (a.empty() ? 0.f : a[worst]) << ", expected "
            << (b.empty() ? 0.f : b[worst]) << " (atol " << atol << ", rtol " << rtol << ")");
  REQUIRE(worst_ratio <= 1.0);
}

// Checks the autograd gradient of loss(inputs) with respect to each input against central
// finite differences, in double-checked float: (L(x+h) - L(x-h)) / 2h on every element.
inline void check_gradients(const std::function<Var(std::vector<Var>&)>& loss_fn, std::vector<Tensor> inputs,
                            float h = 1e-2f, float atol = 2e-3f, float rtol = 2e-2f) {
  std::vector<Var> vars;
  for (Tensor& t : inputs) vars.emplace_back(t.clone(), true);
  Var loss = loss_fn(vars);
  backward(loss);
  for (size_t k = 0; k < vars.size(); ++k) {
    Tensor analytic = vars[k].grad();
    Tensor numeric = Tensor::zeros(inputs[k].shape());
    float* num = numeric.data<float>();
    for (int64_t i = 0; i < inputs[k].numel(); ++i) {
      auto eval = [&](float delta) {
        NoGradScope no_grad;
        std::vector<Var> probe;
        for (size_t j = 0; j < inputs.size(); ++j) probe.emplace_back(inputs[j].clone(), false);
        probe[k].value().data<float>()[i] += delta;
        return static_cast<double>(loss_fn(probe).value().item());
      };
      num[i] = static_cast<float>((eval(h) - eval(-h)) / (2.0 * h));
    }
    require_close(analytic, numeric, atol, rtol, "gradient of input " + std::to_string(k));
  }
}

}  // namespace mdq::testing

// Helpers shared by the tests: the seeded inputs of tests/support/inputs.h, closeness checks with
// a stated tolerance, and central finite differences for backward checks.
#pragma once
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/tensor.h"
#include "tests/support/compare.h"
#include "tests/support/finite_differences.h"
#include "tests/support/inputs.h"

namespace mdq::testing {

// An f32 tensor's bits, from any device, so that equality means bit for bit (+0 and -0 differ).
inline std::vector<uint32_t> bits(const Tensor& t) {
  const std::vector<float> v = t.to_vector();
  std::vector<uint32_t> b(v.size());
  if (!v.empty()) std::memcpy(b.data(), v.data(), v.size() * sizeof(float));
  return b;
}

// A tensor's 32-bit words (packed bits, or any 4-byte type as raw words), on the host, from any device.
inline std::vector<uint32_t> words(const Tensor& t) {
  const Tensor h = t.cpu();
  const uint32_t* p = static_cast<const uint32_t*>(h.raw());
  return std::vector<uint32_t>(p, p + h.nbytes() / 4);
}

// An i16 tensor's values, on the host, from any device.
inline std::vector<int16_t> int16s(const Tensor& t) {
  const Tensor h = t.cpu();
  const int16_t* p = h.data<int16_t>();
  return std::vector<int16_t>(p, p + h.numel());
}

// The normalised max error of actual against expected under `bound` is <= 1 (compare.h);
// reports the worst element on failure.
inline void require_close(const Tensor& actual, const Tensor& expected, const Bound& bound,
                          const std::string& what = "") {
  const Comparison c = compare(actual, expected, bound);
  INFO(what << " " << c.detail);
  REQUIRE(c.same_shape);
  REQUIRE(c.error <= 1.0);
}

// The same without stopping the test case on failure, for tables of checks.
inline void check(const Comparison& c, const std::string& what) {
  INFO(what << ": " << c.detail);
  CHECK(c.same_shape);
  CHECK(c.error <= 1.0);
}

// max |a - b| / (atol + rtol |b|) <= 1 elementwise.
inline void require_close(const Tensor& actual, const Tensor& expected, float atol, float rtol,
                          const std::string& what = "") {
  require_close(actual, expected, Bound{atol, rtol}, what);
}

// Checks the autograd gradient of loss(inputs) with respect to each input against central
// finite differences on every element (tests/support/finite_differences.h).
inline void check_gradients(const std::function<Var(std::vector<Var>&)>& loss_fn, std::vector<Tensor> inputs,
                            float h = 1e-2f, float atol = 2e-3f, float rtol = 2e-2f) {
  std::vector<Var> vars;
  for (Tensor& t : inputs) vars.emplace_back(t.clone(), true);
  Var loss = loss_fn(vars);
  backward(loss);
  auto loss_at = [&](const std::vector<Tensor>& probe) {
    NoGradScope no_grad;
    std::vector<Var> v;
    for (const Tensor& t : probe) v.emplace_back(t, false);
    return static_cast<double>(loss_fn(v).value().item());
  };
  for (size_t k = 0; k < vars.size(); ++k) {
    std::vector<double> numeric = central_differences(loss_at, inputs, k, all_elements(inputs[k]), h);
    require_close(vars[k].grad(), Tensor::from_vector(std::vector<float>(numeric.begin(), numeric.end()),
                                                      inputs[k].shape()),
                  atol, rtol, "gradient of input " + std::to_string(k));
  }
}

}  // namespace mdq::testing

// Seeded inputs for tests and benchmarks, with no test framework attached (the op table in
// tests/ops and benchmarks/bench_ops.cpp use them too): random values that are never zero, signs,
// ternary values, labels, inputs that keep finite differences away from kinks and ties, and NaN
// poison for outputs.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "engine/random.h"
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

// Class labels in [0, classes), i32 [n], from a seed (never out of range).
inline Tensor random_labels(int64_t n, int64_t classes, uint64_t seed) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  Rng rng(seed);
  for (auto& x : v) x = static_cast<int32_t>(rng.below(static_cast<uint64_t>(classes)));
  return Tensor::from_vector_i32(v, {n});
}

// Values a multiple of 0.05 apart in a random order: no two within 2h of each other, so a
// finite-difference probe (h = 0.01) never changes which element a max window picks.
inline Tensor distinct_values(const Shape& shape, uint64_t seed) {
  const int64_t n = shape_numel(shape);
  std::vector<float> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0.f);
  std::shuffle(v.begin(), v.end(), std::mt19937_64(seed));
  for (float& x : v) x = (x - static_cast<float>(n / 2)) * 0.05f + 0.025f;  // never exactly 0
  return Tensor::from_vector(v, shape);
}

// Uniform in [-8, 8], at least 0.05 away from the kinks of relu and relu6 at 0 and 6.
inline Tensor away_from_kinks(const Shape& shape, uint64_t seed) {
  Tensor t = random_tensor(shape, seed, -8.f, 8.f);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i)
    for (float kink : {0.f, 6.f})
      if (std::fabs(p[i] - kink) < 0.05f) p[i] = kink + (p[i] < kink ? -0.1f : 0.1f);
  return t;
}

// Fills a tensor with NaN so any element an op forgets to write fails the comparison.
inline void poison(Tensor& t) { t.fill_(std::numeric_limits<float>::quiet_NaN()); }

}  // namespace mdq::testing

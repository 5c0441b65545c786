// Comparing a computed tensor with the expected one under a stated error bound, with no test
// framework attached: tests wrap the result in REQUIRE, the op table states its bounds in it.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace mdq::testing {

// Element i may be off by atol + rtol |expected_i| + rms * rms(expected). The rms term makes a
// bound relative to the size of the whole output, for sums whose elements may cancel to ~0
// (convolutions, products). All three zero asks for equal values.
struct Bound {
  float atol = 0, rtol = 0, rms = 0;
};

struct Comparison {
  bool same_shape = false;
  // Normalised max error: max_i |actual_i - expected_i| / allowed_i, 0 where the values are equal,
  // infinite for a NaN. It passes at <= 1.
  double error = 0;
  int64_t worst = 0;
  double actual = 0, expected = 0;
  std::string detail;  // the shapes, or the worst element and the bound

  bool ok() const { return same_shape && error <= 1.0; }
};

inline std::vector<double> values_of(const Tensor& t) {
  std::vector<double> v;
  if (t.dtype() == DType::I32) {
    for (int32_t x : t.to_vector_i32()) v.push_back(x);
  } else {
    for (float x : t.to_vector()) v.push_back(x);
  }
  return v;
}

inline double rms_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return v.empty() ? 0.0 : std::sqrt(s / static_cast<double>(v.size()));
}

// Compares f32 or i32 tensors (any devices; both are read back to the host).
inline Comparison compare(const Tensor& actual, const Tensor& expected, const Bound& bound) {
  Comparison c;
  std::ostringstream s;
  c.same_shape = actual.shape() == expected.shape() && actual.dtype() == expected.dtype();
  if (!c.same_shape) {
    s << "got " << actual.describe() << ", expected " << expected.describe();
    c.error = std::numeric_limits<double>::infinity();
    c.detail = s.str();
    return c;
  }
  const std::vector<double> a = values_of(actual), e = values_of(expected);
  const double scale_free = bound.atol + bound.rms * rms_of(e);
  c.error = -1;
  for (size_t i = 0; i < a.size(); ++i) {
    const double diff = std::fabs(a[i] - e[i]);
    const double err = a[i] == e[i]       ? 0.0
                       : std::isnan(diff) ? std::numeric_limits<double>::infinity()
                                          : diff / (scale_free + bound.rtol * std::fabs(e[i]));
    if (err > c.error) {
      c.error = err;
      c.worst = static_cast<int64_t>(i);
    }
  }
  if (a.empty()) c.error = 0;
  if (!a.empty()) c.actual = a[c.worst], c.expected = e[c.worst];
  s << "normalised max error " << c.error << " at element " << c.worst << ": got " << c.actual << ", expected "
    << c.expected << " (atol " << bound.atol << ", rtol " << bound.rtol << ", rms " << bound.rms << ")";
  c.detail = s.str();
  return c;
}

}  // namespace mdq::testing

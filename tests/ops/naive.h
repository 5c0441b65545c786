// Naive building blocks for the op table's references (tests/ops/cases_*.cpp): a map over
// elements and sums into buckets in double, on the host.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "engine/tensor.h"

namespace mdq::optest {

// out_i = f(x_i, i), shaped like x (the index lets f read other inputs at i).
inline Tensor naive_map(const Tensor& x, const std::function<float(float, int64_t)>& f) {
  Tensor y = x.clone();
  for (int64_t i = 0; i < y.numel(); ++i) y.data<float>()[i] = f(x.data<float>()[i], i);
  return y;
}

// sums[b] = sum of x_i over the i with bucket_of(i) == b, in double.
inline std::vector<double> bucket_sums(const Tensor& x, int64_t buckets,
                                       const std::function<int64_t(int64_t)>& bucket_of) {
  std::vector<double> sums(static_cast<size_t>(buckets), 0.0);
  for (int64_t i = 0; i < x.numel(); ++i) sums[static_cast<size_t>(bucket_of(i))] += x.data<float>()[i];
  return sums;
}

inline Tensor to_tensor(const std::vector<double>& v, const Shape& shape) {
  return Tensor::from_vector(std::vector<float>(v.begin(), v.end()), shape);
}

}  // namespace mdq::optest

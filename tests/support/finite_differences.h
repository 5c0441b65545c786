// Central finite differences of a scalar function of several f32 tensors, with no test framework
// attached (the op table's backward checks and testing::check_gradients share it).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "engine/tensor.h"

namespace mdq::testing {

inline std::vector<int64_t> all_elements(const Tensor& t) {
  std::vector<int64_t> v(static_cast<size_t>(t.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int64_t>(i);
  return v;
}

// d loss / d inputs[k][i] for each i in `elements`, as (L(x + h) - L(x - h)) / (x+h - (x-h)) with
// the loss in double. The step is divided by what x + h and x - h really are in float, so the
// rounding of a large x does not bias the slope. loss must not modify its inputs; `inputs` are
// CPU tensors, probed in place on a private copy.
inline std::vector<double> central_differences(const std::function<double(const std::vector<Tensor>&)>& loss,
                                               const std::vector<Tensor>& inputs, size_t k,
                                               const std::vector<int64_t>& elements, float h) {
  std::vector<Tensor> probe;
  for (const Tensor& t : inputs) probe.push_back(t.clone());
  float* p = probe[k].data<float>();
  std::vector<double> slopes;
  for (int64_t i : elements) {
    const float x = p[i], up = x + h, down = x - h;
    p[i] = up;
    const double l_up = loss(probe);
    p[i] = down;
    const double l_down = loss(probe);
    p[i] = x;
    slopes.push_back((l_up - l_down) / (static_cast<double>(up) - static_cast<double>(down)));
  }
  return slopes;
}

}  // namespace mdq::testing

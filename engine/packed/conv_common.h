// Helpers both packed convolution files use (binary_conv.cpp: W1A1; packed_conv.cpp: weights,
// references and W1A16): popcount, output size, and the argument checks with their messages.
#pragma once
#include <bitset>
#include <cstdint>

#include "common/window.h"
#include "engine/packed/packed_conv.h"

namespace mdq::packed::detail {

inline int popc(uint32_t v) { return static_cast<int>(std::bitset<32>(v).count()); }

// Output size along one dimension (common/window.h).
inline int64_t out_size(int64_t in, int64_t k, const ConvGeometry& g) {
  return ops::window_output_size(in, k, g.stride, g.padding);
}

inline void check_geometry(const char* op, const Tensor& x, const PackedWeights& w, const ConvGeometry& g) {
  MDQ_CHECK(w.sign.defined() && w.sign.ndim() == 4, op << ": weights are not packed: " << w.sign.describe());
  MDQ_CHECK(g.stride >= 1 && g.padding >= 0, op << ": bad stride " << g.stride << " or padding " << g.padding);
  MDQ_CHECK(x.dim(1) + 2 * g.padding >= w.kernel_h() && x.dim(2) + 2 * g.padding >= w.kernel_w(),
            op << ": kernel " << w.kernel_h() << "x" << w.kernel_w() << " larger than the padded input " << x.describe());
  check_same_device(op, x, w.sign);
}

inline void check_vector(const char* op, const Tensor& v, int64_t O, const Tensor& x) {
  if (!v.defined()) return;
  check_dtype(op, v, DType::F32);
  MDQ_CHECK(v.numel() == O, op << ": per-channel vector " << v.describe() << " needs " << O << " values");
  check_same_device(op, x, v);
}

}  // namespace mdq::packed::detail

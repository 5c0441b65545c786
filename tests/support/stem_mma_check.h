// The tensor-core stem's outputs against its CPU reference (kernels/stem_conv_mma.h:
// kernels::reference::mma, the MMAs' products of bf16 operands, rounded or split, sums in double), within the f32
// summation error: shared by the kernel's test (tests/gpu/test_stem_conv_mma_gpu.cpp) and the
// plan's (tests/gpu/test_infer_lower_gpu.cpp, the TensorCores stem step).
//
// Tolerance, per output (o its filter): tol = 1e-5 (|scale[o]| sum |terms| + |shift[o]|) + 1e-6.
// The reference and the kernel take the same products of bf16 parts, each exact in f32, so they
// differ only by the kernel's f32 sums (a rounding per MMA accumulation and inside the tensor
// core's 16-term dot products: for K <= 224 taps, three MMAs each with split operands, well under
// 1e-5 of sum |terms|, a few dozen f32 roundings of 2^-23 or less, even where the hardware
// truncates) and the epilogue's one fma (2^-24 of |scale d + shift|).
//   - f32 form: |gpu - ref| <= tol, ref = act(scale d + shift) in double;
//   - bf16 form: one more rounding to bf16 (at most 2^-8 of the value): <= tol + 2^-8 (|ref| + tol);
//   - signs form: bits equal wherever the bit is decided beyond the tolerance (ReLU on: always 1;
//     off: |scale d + shift| > tol); nearer 0 a bit may flip, and those undecided outputs must be
//     at most 0.1% of all (so the comparison still covers almost every bit).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/window.h"
#include "kernels/stem_conv_mma.h"

namespace mdq::testing {

// The reference's values for every output (NHWC order): pre = scale d + shift before the
// activation, tol as above. `host`: the stem's arguments on host pointers.
struct StemMmaReference {
  std::vector<double> pre, tol;
  bool relu = false;
  double value(size_t i) const { return relu ? std::max(pre[i], 0.0) : pre[i]; }
};

inline StemMmaReference stem_mma_reference(const kernels::StemConvArgs& host, kernels::StemMmaOperands operands) {
  namespace ref = kernels::reference::mma;
  const int OH = ops::window_output_size(host.H, host.KH, host.stride, host.pad);
  const int OW = ops::window_output_size(host.W, host.KW, host.stride, host.pad);
  StemMmaReference r;
  r.relu = host.relu;
  const size_t n = size_t(host.N) * OH * OW * host.O;
  r.pre.reserve(n);
  r.tol.reserve(n);
  for (int b = 0; b < host.N; ++b)
    for (int oh = 0; oh < OH; ++oh)
      for (int ow = 0; ow < OW; ++ow)
        for (int o = 0; o < host.O; ++o) {
          double abs_sum = 0;
          const double d = ref::stem_sum(host, b, oh, ow, o, &abs_sum, operands);
          r.pre.push_back(ref::stem_pre(host, d, o));
          const double sc = host.scale ? std::fabs(double(host.scale[o])) : 1.0;
          const double sh = host.shift ? std::fabs(double(host.shift[o])) : 0.0;
          r.tol.push_back(1e-5 * (sc * abs_sum + sh) + 1e-6);
        }
  return r;
}

// The signs form's words (u32 [N][OH][OW][O/32]) against the reference: bits that differ where
// the bit is decided, and the outputs left undecided.
struct StemSignsCheck {
  int64_t wrong = 0, undecided = 0, outputs = 0;
};

inline StemSignsCheck check_stem_signs(const StemMmaReference& r, const std::vector<uint32_t>& words) {
  StemSignsCheck c;
  c.outputs = int64_t(r.pre.size());
  if (words.size() * 32 != r.pre.size()) {
    c.wrong = -1;  // not the reference's shape
    return c;
  }
  for (size_t i = 0; i < r.pre.size(); ++i) {
    if (!r.relu && std::fabs(r.pre[i]) <= r.tol[i]) {
      ++c.undecided;
      continue;
    }
    const bool want = r.relu || r.pre[i] >= 0, bit = (words[i / 32] >> (i % 32)) & 1u;
    c.wrong += bit != want;
  }
  return c;
}

}  // namespace mdq::testing

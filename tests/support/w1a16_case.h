// A W1A16 / W2A16 convolution case and its CPU results, and the check of a GPU kernel against
// them (tests/gpu/test_packed_gpu.cpp's main-path kernels, dev/tests/test_w1a16_ws_gpu.cpp's
// workshop kernel).
#pragma once
#include <cmath>
#include <string>

#include "engine/packed/bitpack.h"
#include "engine/packed/packed_conv.h"
#include "tests/support/conv_case.h"
#include "tests/support/testing.h"

namespace mdq::testing {

// Random bf16 activations, random ±1 (or ternary) weights and a random per-channel scale of case
// c, with packed::w1a16_conv2d's CPU results: f32 out with the scale, and bf16 out with ReLU.
struct W1A16Reference {
  Tensor x, scale, f32_out, bf16_relu_out;
  packed::PackedWeights w;
  packed::ConvGeometry g;
  float atol;
};

inline W1A16Reference w1a16_reference(const ConvCase& c, bool ternary) {
  W1A16Reference r;
  r.x = packed::to_bf16(random_tensor({c.N, c.H, c.W, c.C}, 90 + c.C));
  Tensor wf = ternary ? random_ternary({c.O, c.C, c.K, c.K}, 91 + c.O) : random_signs({c.O, c.C, c.K, c.K}, 91 + c.O);
  r.w = ternary ? packed::pack_ternary_weights(wf) : packed::pack_binary_weights(wf);
  r.g = {c.stride, c.pad};
  r.scale = random_tensor({c.O}, 92, 0.5f, 2.f);
  // Tolerance: inputs are bf16 on both sides and products with ±1/0 are exact, so the only
  // difference is fp32 accumulation order on the GPU vs double on the CPU: well under 1e-4
  // relative to the sum of |terms| (<= K); we allow atol 1e-3 sqrt(K) and rtol 1e-2 (bf16 out:
  // one bf16 rounding, 2^-8 relative, on top: 2e-2).
  r.atol = 1e-3f * std::sqrt(static_cast<float>(c.C * c.K * c.K));
  r.f32_out = packed::w1a16_conv2d(r.x, r.w, r.g, {r.scale, {}, false, DType::F32});
  r.bf16_relu_out = packed::w1a16_conv2d(r.x, r.w, r.g, {{}, {}, true, DType::BF16});
  return r;
}

// The inputs of r on the GPU, for the kernels under test.
struct W1A16DeviceInputs {
  Tensor x, scale;
  packed::PackedWeights w;
  explicit W1A16DeviceInputs(const W1A16Reference& r) : x(r.x.cuda()), scale(r.scale.cuda()), w(r.w.to(Device::CUDA)) {}
};

// run(out) -> the GPU kernel's output for output spec `out` on the inputs d; checked against r's
// CPU results, f32 with the scale and bf16 with ReLU.
template <class Run>
void require_matches_w1a16_reference(const W1A16Reference& r, const W1A16DeviceInputs& d, Run run,
                                     const std::string& what) {
  Tensor got = run(packed::FloatOutput{d.scale, {}, false, DType::F32});
  REQUIRE(got.defined());
  require_close(got, r.f32_out, r.atol, 1e-2f, "f32 out " + what);
  Tensor gb = run(packed::FloatOutput{{}, {}, true, DType::BF16});
  REQUIRE(gb.defined());
  require_close(packed::to_f32(gb), packed::to_f32(r.bf16_relu_out), r.atol, 2e-2f, "bf16 relu out " + what);
}

}  // namespace mdq::testing

// The fused sign stem (Bf16Stem::signs) against the stem and Binarize run apart, both ways
// (direct and MDQ_STEM_DIRECT=0), on the CPU and on CUDA (tests/cpu/test_stem_conv.cpp,
// tests/gpu/test_stem_conv_gpu.cpp).
#pragma once
#include "engine/infer/steps.h"
#include "tests/support/stem_case.h"
#include "tests/support/testing.h"

namespace mdq::testing {

inline void check_fused_signs(const StemCase& s, uint64_t seed, DType dense, Device device) {
  const StemInputs in = stem_inputs(s, seed);
  infer::Bf16Stem fused = stem_step(s, in, dense, device);
  fused.signs = true;
  REQUIRE(fused.direct());
  const infer::Bf16Stem apart = stem_step(s, in, dense, device);
  const StemRuns f = run_both_ways(fused, in.x), a = run_both_ways(apart, in.x);
  REQUIRE(f.direct.device() == device);
  // Binarize of the unfused step's output, as the plan's next step had it. With bf16 Dense a
  // value's rounding keeps its sign (bf16 has f32's exponent range; only an f32 below 2^-133 in
  // magnitude would round to a signed zero, and random inputs give none).
  infer::Activation direct{a.direct}, three{a.three_pass};
  infer::Binarize(infer::Form::Dense).run(direct);
  infer::Binarize(infer::Form::Dense).run(three);
  CHECK(words(f.direct) == words(direct.x));
  CHECK(words(f.three_pass) == words(three.x));
  // The two ways apart: only where the exact value is within the three passes' rounding of 0.
  const SignFlips flips = sign_flips(s, in, f.direct, f.three_pass);
  INFO("signs that differ between the direct and the three passes: " << flips.all);
  CHECK(flips.clear == 0);
  // What the step hands on: a map of O channels, as Binarize's.
  infer::Activation h{in.x.to(device)};
  fused.run(h);
  CHECK(h.channels == s.O);
  CHECK_FALSE(h.vector);
  CHECK(h.channels == direct.channels);
}

}  // namespace mdq::testing

// The tensor-core stem (kernels/stem_conv_mma.cu), both operand forms (bf16-rounded and
// split-bf16 images and weights), against its CPU reference (kernels::reference::mma in
// kernels/stem_conv_mma.h: the MMAs' products, sums in double), on random non-zero inputs
// (tests/support/stem_case.h: images in [-2, 2), weights in [-0.5, 0.5), scales of both signs, shifts in [-1, 1)): ImageNet ResNet-18's stem at batch 2
// (224x224 -> 112x112, 7x7 stride 2 pad 3, 64 filters), a CIFAR-like odd shape (33x33, 3x3
// stride 1 pad 1, 16 filters), 7x7 stride 2 pad 3 with 32 filters at batch 1, the direct stem's
// test shapes (1 to 4 channels, 5x5 unpadded, 1x1, partial tiles at every edge), and batches
// with more tiles than resident CTAs at both strides; ReLU on and off; all three output forms,
// within the tolerances of tests/support/stem_mma_check.h (derived there). Each launcher also
// writes nothing past its output (a poisoned tail stays as it was). The engine's route to it
// (packed::stem_conv_nhwc / stem_conv_signs with StemArithmetic::SplitBf16TensorCores and
// Bf16TensorCores) gives the launcher's bits in the matching form, and the F32 arithmetic the
// direct kernel's.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "common/scoped_env.h"
#include "engine/packed/stem_conv.h"
#include "tests/support/stem_case.h"
#include "tests/support/stem_mma_check.h"
#include "tests/support/testing.h"
#ifdef MDQ_HAS_CUDA
#include "kernels/stem_conv_mma.h"
#endif

using namespace mdq;
using testing::StemCase;

#ifdef MDQ_HAS_CUDA
namespace {

constexpr uint32_t kPoison = 0xdeadbeefu;
constexpr int64_t kTail = 64;  // poisoned words after each output

kernels::StemConvArgs args_of(const StemCase& s, const float* x, const float* w, const float* scale,
                              const float* shift) {
  kernels::StemConvArgs a;
  a.x = x, a.w = w, a.scale = scale, a.shift = shift;
  a.N = int(s.N), a.C = int(s.C), a.H = int(s.H), a.W = int(s.W), a.O = int(s.O), a.KH = int(s.K), a.KW = int(s.K);
  a.stride = int(s.stride), a.pad = int(s.pad), a.relu = s.relu;
  return a;
}

// A device buffer of `words` 32-bit words plus a poisoned tail; returns the host copy after `fill`.
template <class Fill>
std::vector<uint32_t> run_poisoned(int64_t words, const Fill& fill) {
  Tensor h = Tensor::empty({words + kTail}, DType::U32);
  std::fill(h.data<uint32_t>(), h.data<uint32_t>() + words + kTail, kPoison);
  Tensor d = h.cuda();
  fill(d.data<uint32_t>());
  return testing::words(d);
}

int64_t tail_written(const std::vector<uint32_t>& v, int64_t words) {
  int64_t n = 0;
  for (int64_t i = words; i < words + kTail; ++i) n += v[size_t(i)] != kPoison;
  return n;
}

// The first n words of v (an output without its poisoned tail).
std::vector<uint32_t> head(std::vector<uint32_t> v, int64_t n) {
  v.resize(size_t(n));
  return v;
}

float as_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

const char* operands_name(kernels::StemMmaOperands op) {
  return op == kernels::StemMmaOperands::SplitBf16 ? "split-bf16 operands" : "bf16 operands";
}

void check_case(const StemCase& s, const testing::StemInputs& in, kernels::StemMmaOperands op) {
  INFO(s.text() << ", " << operands_name(op));
  const Tensor xg = in.x.cuda(), wg = in.w.cuda(), sg = in.scale.cuda(), hg = in.shift.cuda();
  const kernels::StemConvArgs host =
      args_of(s, in.x.data<float>(), in.w.data<float>(), in.scale.data<float>(), in.shift.data<float>());
  const kernels::StemConvArgs dev_args =
      args_of(s, xg.data<float>(), wg.data<float>(), sg.data<float>(), hg.data<float>());
  const testing::StemMmaReference ref = testing::stem_mma_reference(host, op);
  const int64_t outputs = int64_t(ref.pre.size());

  {  // f32 NHWC
    const std::vector<uint32_t> got = run_poisoned(outputs, [&](uint32_t* y) {
      REQUIRE(kernels::stem_conv_mma_nhwc_f32(dev_args, reinterpret_cast<float*>(y), op));
    });
    int64_t outside = 0;
    double worst = 0;
    for (size_t i = 0; i < size_t(outputs); ++i) {
      const double err = std::fabs(double(as_float(got[i])) - ref.value(i));
      outside += !(err <= ref.tol[i]);
      worst = std::max(worst, err / ref.tol[i]);
    }
    INFO("f32: worst |gpu - ref| / tol = " << worst);
    CHECK(outside == 0);
    CHECK(tail_written(got, outputs) == 0);
  }
  {  // bf16 NHWC (two values a word)
    const std::vector<uint32_t> got = run_poisoned(outputs / 2, [&](uint32_t* y) {
      REQUIRE(kernels::stem_conv_mma_nhwc_bf16(dev_args, reinterpret_cast<uint16_t*>(y), op));
    });
    int64_t outside = 0;
    for (size_t i = 0; i < size_t(outputs); ++i) {
      const uint16_t b = uint16_t(got[i / 2] >> (16 * (i % 2)));  // little-endian: the lower address first
      const double v = ref.value(i), bound = ref.tol[i] + std::ldexp(std::fabs(v) + ref.tol[i], -8);
      outside += !(std::fabs(double(bf16_to_float(b)) - v) <= bound);
    }
    CHECK(outside == 0);
    CHECK(tail_written(got, outputs / 2) == 0);
  }
  if (s.O % 32 == 0) {  // the signs
    const std::vector<uint32_t> got =
        run_poisoned(outputs / 32, [&](uint32_t* y) { REQUIRE(kernels::stem_conv_mma_signs(dev_args, y, op)); });
    const testing::StemSignsCheck c = testing::check_stem_signs(ref, head(got, outputs / 32));
    INFO("undecided (|scale d + shift| <= tol): " << c.undecided << " of " << c.outputs);
    CHECK(c.wrong == 0);
    CHECK(c.undecided * 1000 <= c.outputs);
    CHECK(tail_written(got, outputs / 32) == 0);
  }
}

}  // namespace

TEST_CASE("the tensor-core stem matches its operands' convolution within f32 summation error") {
  if (!kernels::stem_conv_mma_supported()) {
    WARN("not run: the tensor-core stem needs bf16 mma.sync (compute capability 8.0 or later)");
    return;
  }
  std::vector<StemCase> cases = {
      {2, 3, 224, 224, 64, 7, 2, 3, true},   // ImageNet ResNet-18's stem (112x112 out)
      {2, 3, 224, 224, 64, 7, 2, 3, false},
      {2, 3, 33, 33, 16, 3, 1, 1, false},    // CIFAR-like, odd size
      {2, 3, 33, 33, 16, 3, 1, 1, true},
      {1, 3, 45, 50, 32, 7, 2, 3, false},    // 7x7 stride 2, 32 filters, batch 1
      {1, 3, 45, 50, 32, 7, 2, 3, true},
      {7, 3, 224, 224, 32, 7, 2, 3, false},  // 343 tiles: more than resident CTAs, stride 2
      {3, 3, 160, 160, 32, 3, 1, 1, true},   // 300 tiles, stride 1
      // 7x7, 3 channels, 64 filters, stride 2 beside ImageNet's: the kernel with the window at
      // compile time and its 16-byte-aligned staging on partial tiles (padding 3 and 7, whole
      // 16-byte units outside the image on both sides), and the run-time-window kernel where
      // padding 0 or a row of 50 floats rules that staging out
      {3, 3, 45, 52, 64, 7, 2, 3, true},
      {1, 3, 30, 28, 64, 7, 2, 3, false},
      {2, 3, 36, 40, 64, 7, 2, 7, true},
      {2, 3, 40, 44, 64, 7, 2, 0, false},
  };
  for (const StemCase& s : testing::stem_cases()) cases.push_back(s);
  // The Win = 7 kernel's staging: TMA where the build has wgmma ("auto"), else 16-byte chunks,
  // which MDQ_STEM_STAGING=chunks selects on Hopper too (for this test case only).
  const std::string staging = GENERATE(as<std::string>{}, "auto", "chunks");
  const ScopedEnv env("MDQ_STEM_STAGING", staging.c_str());
  INFO("staging " << staging);
  uint64_t seed = 2600;
  for (const auto op : {kernels::StemMmaOperands::SplitBf16, kernels::StemMmaOperands::Bf16})
    for (const StemCase& s : cases) check_case(s, testing::stem_inputs(s, seed += 10), op);
}

// Weights that are quantization levels have lo(w) = 0, and the kernel then leaves out the hi(x)
// lo(w) MMAs (KForm::SplitExactW); the reference's products are the same. One weight off the
// levels (0.3: lo(w) != 0, and its lo part matters at these tolerances) must send the whole
// launch back to three MMAs, whichever thread read it.
TEST_CASE("the split tensor-core stem on quantized weights (levels -1, 0, 1) matches the reference") {
  if (!kernels::stem_conv_mma_supported()) {
    WARN("not run: the tensor-core stem needs bf16 mma.sync (compute capability 8.0 or later)");
    return;
  }
  const StemCase cases[] = {{2, 3, 224, 224, 64, 7, 2, 3, true}, {3, 3, 45, 50, 64, 7, 2, 3, false},
                            {2, 3, 33, 33, 16, 3, 1, 1, false}, {1, 4, 23, 17, 32, 3, 1, 1, true}};
  uint64_t seed = 3100;
  for (const StemCase& s : cases)
    for (const bool one_off_levels : {false, true}) {
      INFO((one_off_levels ? "levels but one weight 0.3" : "levels"));
      testing::StemInputs in = testing::stem_inputs(s, seed += 10);
      float* w = in.w.data<float>();
      const int64_t n = in.w.numel();
      for (int64_t i = 0; i < n; ++i) w[i] = w[i] < -1.f / 6 ? -1.f : w[i] < 1.f / 6 ? 0.f : 1.f;  // [-.5, .5) in thirds
      if (one_off_levels) w[n * 2 / 3] = 0.3f;
      check_case(s, in, kernels::StemMmaOperands::SplitBf16);
    }
}

TEST_CASE("the tensor-core stem refuses the shapes the direct kernel refuses, and images past 32-bit offsets") {
  const float* p = nullptr;
  kernels::StemConvArgs a = args_of({1, 5, 9, 9, 16, 3, 1, 1, false}, p, p, p, p);  // 5 channels
  REQUIRE_THROWS_WITH(kernels::stem_conv_mma_nhwc_f32(a, nullptr, kernels::StemMmaOperands::SplitBf16),
                      Catch::Contains("does not take"));
  a = args_of({1, 3, 9, 9, 16, 3, 1, 1, false}, p, p, p, p);  // signs of 16 filters
  REQUIRE_THROWS_WITH(kernels::stem_conv_mma_signs(a, nullptr, kernels::StemMmaOperands::Bf16),
                      Catch::Contains("does not take"));
  a = args_of({1, 3, 30000, 30000, 64, 7, 2, 3, false}, p, p, p, p);  // 2.7e9 values an image: 32-bit offsets
  REQUIRE_THROWS_WITH(kernels::stem_conv_mma_signs(a, nullptr, kernels::StemMmaOperands::SplitBf16),
                      Catch::Contains("fewer than 2^31"));
}

// packed::stem_conv_nhwc / stem_conv_signs on CUDA: SplitBf16TensorCores and Bf16TensorCores are
// the launcher's output with the matching operands, bit for bit, where the device has tensor
// cores (else the direct kernel's, as F32 always is); on the CPU every arithmetic is the direct
// kernel's reference.
TEST_CASE("packed::stem_conv_* with a tensor-core arithmetic run the tensor-core launcher; F32 the direct kernel") {
  const bool tc = kernels::stem_conv_mma_supported();
  CHECK(packed::stem_tensor_cores_available(Device::CUDA) == tc);
  CHECK_FALSE(packed::stem_tensor_cores_available(Device::CPU));
  const std::pair<packed::StemArithmetic, kernels::StemMmaOperands> forms[] = {
      {packed::StemArithmetic::SplitBf16TensorCores, kernels::StemMmaOperands::SplitBf16},
      {packed::StemArithmetic::Bf16TensorCores, kernels::StemMmaOperands::Bf16}};
  for (const auto& [kTc, op] : forms) {
    for (const StemCase& s : {StemCase{2, 3, 45, 50, 64, 7, 2, 3, false}, StemCase{3, 3, 17, 18, 32, 3, 1, 1, true}}) {
      INFO(s.text() << ", " << operands_name(op));
      const testing::StemInputs in = testing::stem_inputs(s, 2900);
      const Tensor xg = in.x.cuda(), wg = in.w.cuda(), sg = in.scale.cuda(), hg = in.shift.cuda();
      const kernels::StemConvArgs a =
          args_of(s, xg.data<float>(), wg.data<float>(), sg.data<float>(), hg.data<float>());
      const int64_t outputs = s.N * s.OH() * s.OW() * s.O;
      const Tensor y32 = packed::stem_conv_nhwc(xg, wg, sg, hg, s.params(), s.relu, DType::F32, kTc);
      const Tensor y16 = packed::stem_conv_nhwc(xg, wg, sg, hg, s.params(), s.relu, DType::BF16, kTc);
      const Tensor bits = packed::stem_conv_signs(xg, wg, sg, hg, s.params(), s.relu, kTc);
      if (tc) {
        const std::vector<uint32_t> f32 = run_poisoned(outputs, [&](uint32_t* y) {
          kernels::stem_conv_mma_nhwc_f32(a, reinterpret_cast<float*>(y), op);
        });
        const std::vector<uint32_t> bf16 = run_poisoned(outputs / 2, [&](uint32_t* y) {
          kernels::stem_conv_mma_nhwc_bf16(a, reinterpret_cast<uint16_t*>(y), op);
        });
        const std::vector<uint32_t> signs =
            run_poisoned(outputs / 32, [&](uint32_t* y) { kernels::stem_conv_mma_signs(a, y, op); });
        CHECK(testing::words(y32) == head(f32, outputs));
        CHECK(testing::words(y16) == head(bf16, outputs / 2));
        CHECK(testing::words(bits) == head(signs, outputs / 32));
      } else {
        CHECK(testing::bits(y32) ==
              testing::bits(packed::stem_conv_nhwc(xg, wg, sg, hg, s.params(), s.relu, DType::F32)));
        CHECK(testing::words(bits) == testing::words(packed::stem_conv_signs(xg, wg, sg, hg, s.params(), s.relu)));
      }
      // F32, and either arithmetic on the CPU: the direct kernel's reference.
      const Tensor want = packed::stem_conv_signs(in.x, in.w, in.scale, in.shift, s.params(), s.relu);
      CHECK(testing::words(packed::stem_conv_signs(xg, wg, sg, hg, s.params(), s.relu)) == testing::words(want));
      CHECK(testing::words(packed::stem_conv_signs(in.x, in.w, in.scale, in.shift, s.params(), s.relu, kTc)) ==
            testing::words(want));
    }
  }
}

#else
TEST_CASE("tensor-core stem GPU tests need a CUDA build") { SUCCEED("built without CUDA"); }
#endif

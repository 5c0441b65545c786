// The direct stem (engine/packed/stem_conv.h) on the CPU: its reference against a naive
// convolution in double with the affine and ReLU after it, on random non-zero inputs and odd
// shapes (batch 1 and 3, 1, 3 and 4 channels, 16, 32 and 64 filters, 3x3 stride 1 and 7x7 stride
// 2 with padding, images that are not multiples of the kernel's 16-pixel tiles).
//   f32 output: |y - naive| <= (C KH KW + 2) 2^-24 (|scale| sum |x w| + |shift|) per element,
//     the error bound of an f32 sum of that many terms (each an fma) and one fma for the affine.
//   bf16 output: exactly the f32 output rounded to bf16 once (the same sums, one rounding).
// Also: Bf16Stem's direct run against its three passes (MDQ_STEM_DIRECT=0) within the bf16
// bound below, what stem_conv_fits takes, MDQ_STEM_DIRECT, and the errors for what it refuses.
// The signs form (stem_conv_signs, Bf16Stem::signs): exactly pack_signs of the f32 form, on the
// same shapes (those with 32 or 64 filters) and on inputs built to land on +0 and -0 (ties:
// bit 1, as pack_signs's x >= 0); the fused step vs the stem and Binarize run apart, both ways.
// The tensor-core arithmetics, which the CPU runs as the direct reference; the tensor-core
// stem's reference sums (kernels/stem_conv_mma.h) against exact ones, by their error bounds.
// The GPU twin: tests/gpu/test_stem_conv_gpu.cpp.
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <vector>

#include "common/bf16.h"
#include "engine/infer/steps.h"
#include "engine/packed/bitpack.h"
#include "engine/packed/stem_conv.h"
#include "engine/random.h"
#include "kernels/stem_conv.h"
#include "kernels/stem_conv_mma.h"
#include "tests/support/stem_case.h"
#include "tests/support/stem_signs_check.h"
#include "tests/support/testing.h"

using namespace mdq;
using testing::StemCase;

TEST_CASE("stem_conv_nhwc on the CPU: f32 within an f32 sum's error of the exact value, bf16 its one rounding") {
  for (const StemCase& s : testing::stem_cases()) {
    INFO(s.text());
    const testing::StemInputs in = testing::stem_inputs(s, 100);
    const testing::StemExact want = testing::stem_exact(s, in);
    const Tensor y = packed::stem_conv_nhwc(in.x, in.w, in.scale, in.shift, s.params(), s.relu, DType::F32);
    REQUIRE(y.shape() == Shape({s.N, s.OH(), s.OW(), s.O}));
    const std::vector<float> got = y.to_vector();
    const double terms = static_cast<double>(s.C * s.K * s.K + 2);
    int64_t outside = 0, nonzero = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const double bound = terms * std::ldexp(1.0, -24) * want.magnitude[i];
      outside += !(std::fabs(got[i] - want.value[i]) <= bound);
      nonzero += got[i] != 0.f;
    }
    CHECK(outside == 0);
    CHECK(nonzero > static_cast<int64_t>(got.size()) / 4);  // not a test of zeros, ReLU or not

    const Tensor b = packed::stem_conv_nhwc(in.x, in.w, in.scale, in.shift, s.params(), s.relu, DType::BF16);
    REQUIRE(b.dtype() == DType::BF16);
    REQUIRE(b.shape() == y.shape());
    const uint16_t* pb = b.data<uint16_t>();
    int64_t differ = 0;
    for (size_t i = 0; i < got.size(); ++i) differ += pb[i] != float_to_bf16(got[i]);
    CHECK(differ == 0);
  }
}

TEST_CASE("stem_conv_nhwc without scale and shift is the plain convolution (and its ReLU)") {
  StemCase s{2, 3, 19, 23, 32, 3, 1, 1, false};
  testing::StemInputs in = testing::stem_inputs(s, 7);
  in.scale = Tensor(), in.shift = Tensor();
  const testing::StemExact want = testing::stem_exact(s, in);
  const std::vector<float> got =
      packed::stem_conv_nhwc(in.x, in.w, Tensor(), Tensor(), s.params(), false, DType::F32).to_vector();
  const std::vector<float> relu =
      packed::stem_conv_nhwc(in.x, in.w, Tensor(), Tensor(), s.params(), true, DType::F32).to_vector();
  int64_t outside = 0, negative = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    outside += !(std::fabs(got[i] - want.value[i]) <= 29 * std::ldexp(1.0, -24) * want.magnitude[i]);
    negative += got[i] < 0.f;
    outside += relu[i] != (got[i] > 0.f ? got[i] : 0.f);
  }
  CHECK(outside == 0);
  CHECK(negative > 0);
}

TEST_CASE("Bf16Stem: the direct pass vs the three passes (MDQ_STEM_DIRECT=0) on the CPU, within bf16's rounding") {
  for (const StemCase& s : {StemCase{3, 3, 37, 29, 64, 7, 2, 3, true}, StemCase{1, 4, 21, 17, 16, 3, 1, 1, false}}) {
    for (DType dense : {DType::BF16, DType::F32}) {
      INFO(s.text() << (dense == DType::BF16 ? ", bf16" : ", f32") << " Dense");
      const testing::StemInputs in = testing::stem_inputs(s, 300);
      const infer::Bf16Stem stem = testing::stem_step(s, in, dense, Device::CPU);
      REQUIRE(stem.direct());
      const testing::StemRuns r = testing::run_both_ways(stem, in.x);
      REQUIRE(r.direct.dtype() == dense);
      REQUIRE(r.three_pass.dtype() == dense);
      CHECK(testing::outside_bf16_bound(s, in, r.direct, r.three_pass) == 0);
    }
  }
}

TEST_CASE("stem_conv_signs on the CPU: exactly the packed signs of the f32 form") {
  int64_t cases = 0;
  for (const StemCase& s : testing::stem_cases()) {
    if (s.O % 32) continue;
    INFO(s.text());
    ++cases;
    const testing::StemInputs in = testing::stem_inputs(s, 150);
    const Tensor bits = packed::stem_conv_signs(in.x, in.w, in.scale, in.shift, s.params(), s.relu);
    REQUIRE(bits.dtype() == DType::U32);
    REQUIRE(bits.shape() == Shape({s.N, s.OH(), s.OW(), s.O / 32}));
    const std::vector<uint32_t> got = testing::words(bits);
    CHECK(got == testing::words(testing::signs_of_f32_form(in.x, in, s)));
    int64_t ones = 0;
    for (uint32_t w : got) ones += __builtin_popcount(w);
    const int64_t all = static_cast<int64_t>(got.size()) * 32;
    if (s.relu) CHECK(ones == all);  // ReLU's output is >= 0: every sign +1
    else CHECK((ones > all / 4 && ones < all * 3 / 4));  // both signs, not a test of one
  }
  CHECK(cases >= 6);
}

// The tensor-core stem's signs epilogue compares d with stem_sign_threshold's t: the same bit as
// stem_sign's fma for every finite d, at the boundary above all (t and the floats next to it,
// which -shift / scale rounded would get wrong about half the time).
TEST_CASE("stem_sign_threshold: (d >= t) != flip is stem_sign for every d tried, at the boundary too") {
  Rng rng(4242);
  auto r = [&](float lo, float hi) { return lo + (hi - lo) * rng.uniform(); };
  int64_t tried = 0, at_boundary_set = 0;
  for (int k = 0; k < 4000; ++k) {
    const bool relu = k % 10 == 9;
    float scale = r(-2.f, 2.f), shift = r(-1.f, 1.f);
    if (k % 50 == 7) scale = 0.f;
    if (k % 50 == 8) scale = 1e-30f;  // the boundary past the largest float
    if (k % 3 == 0) shift *= 1e-6f;
    bool flip = false;
    const float t = kernels::stem_sign_threshold(scale, shift, relu, flip);
    std::vector<float> ds = {t, std::nextafter(t, -INFINITY), std::nextafter(t, INFINITY), -shift / scale, 0.f, -0.f,
                             3e38f, -3e38f};
    for (int i = 0; i < 24; ++i) ds.push_back(r(-300.f, 300.f));
    for (const float d : ds) {
      if (!std::isfinite(d)) continue;
      ++tried;
      INFO("scale " << scale << ", shift " << shift << ", relu " << relu << ", d " << d << ", t " << t);
      REQUIRE(((d >= t) != flip) == kernels::stem_sign(d, scale, shift, relu));
    }
    if (!relu && scale != 0.f && std::isfinite(t)) at_boundary_set += kernels::stem_sign(t, scale, shift, false);
  }
  CHECK(tried > 100000);
  CHECK(at_boundary_set > 1000);  // the boundary cases were there (t itself on the set side when scale > 0)
}

TEST_CASE("stem_conv_signs on the CPU: an epilogue exactly at +0 or -0 is a +1 bit, as pack_signs has it") {
  for (const StemCase& s : {StemCase{3, 3, 19, 21, 64, 7, 2, 3, false}, StemCase{2, 1, 17, 18, 32, 3, 1, 1, false}}) {
    INFO(s.text());
    const testing::StemInputs in = testing::stem_tie_inputs(s, 160);
    const std::vector<float> y =
        packed::stem_conv_nhwc(in.x, in.w, in.scale, in.shift, s.params(), false, DType::F32).to_vector();
    int64_t plus = 0, minus = 0;
    for (float v : y) plus += v == 0.f && !std::signbit(v), minus += v == 0.f && std::signbit(v);
    CHECK(plus >= s.O / 2);  // the constructed ties are there
    CHECK(minus >= s.OH() * s.OW() * s.O / 2);
    const Tensor bits = packed::stem_conv_signs(in.x, in.w, in.scale, in.shift, s.params(), false);
    CHECK(testing::words(bits) == testing::words(testing::signs_of_f32_form(in.x, in, s)));
    const std::vector<uint32_t> w = testing::words(bits);
    int64_t tie_bits = 0;
    for (size_t i = 0; i < y.size(); ++i)
      if (y[i] == 0.f) tie_bits += (w[i / 32] >> (i % 32)) & 1u;
    CHECK(tie_bits == plus + minus);
  }
}

TEST_CASE("Bf16Stem with signs on the CPU: the fused step vs the stem and Binarize apart, both ways") {
  for (const StemCase& s : {StemCase{3, 3, 37, 29, 64, 7, 2, 3, false}, StemCase{1, 4, 21, 17, 32, 3, 1, 1, false},
                            StemCase{3, 1, 18, 23, 64, 3, 1, 1, true}}) {
    INFO(s.text());
    testing::check_fused_signs(s, 310, DType::F32, Device::CPU);
  }
}

// The CPU has no tensor cores: either tensor-core arithmetic runs the direct kernel's reference
// there, bit for bit (no model of the bf16 rounding), in all three forms.
TEST_CASE("StemArithmetic's tensor-core forms on the CPU: the direct reference, bit for bit") {
  CHECK_FALSE(packed::stem_tensor_cores_available(Device::CPU));
  for (const auto kTc : {packed::StemArithmetic::SplitBf16TensorCores, packed::StemArithmetic::Bf16TensorCores}) {
    for (const StemCase& s : testing::stem_cases()) {
      INFO(s.text() << (kTc == packed::StemArithmetic::Bf16TensorCores ? ", bf16" : ", split-bf16"));
      const testing::StemInputs in = testing::stem_inputs(s, 160);
      for (DType out : {DType::F32, DType::BF16})
        CHECK(testing::words(packed::stem_conv_nhwc(in.x, in.w, in.scale, in.shift, s.params(), s.relu, out, kTc)) ==
              testing::words(packed::stem_conv_nhwc(in.x, in.w, in.scale, in.shift, s.params(), s.relu, out)));
      if (s.O % 32 == 0)
        CHECK(testing::words(packed::stem_conv_signs(in.x, in.w, in.scale, in.shift, s.params(), s.relu, kTc)) ==
              testing::words(packed::stem_conv_signs(in.x, in.w, in.scale, in.shift, s.params(), s.relu)));
    }
  }
}

// The tensor-core stem's products as its CPU reference takes them (kernels/stem_conv_mma.h),
// against x w in double. bf16 keeps 8 significant bits (unit roundoff u = 2^-8): bf16(x) bf16(w)
// is within (2u + u^2) |x w| of x w. Split: x = hi + lo + r with |r| <= u |x - hi| <= u^2 |x|, and
// leaving out lo(x) lo(w) (<= u^2 |x w|) gives within (3 u^2 + 2 u^3) |x w|: 3.02 * 2^-16.
// Values from 2^-20 to 2^20 of both signs (normal in bf16, so the bounds hold).
TEST_CASE("the tensor-core stem's products: split-bf16 within 3.02 * 2^-16 of x w, bf16 within 2^-7") {
  namespace ref = kernels::reference::mma;
  Rng rng(4242);
  const double u = std::ldexp(1.0, -8);
  double worst_split = 0, worst_bf16 = 0;
  for (int i = 0; i < 200000; ++i) {
    auto value = [&] {  // ±m 2^e, m in [1, 2), e in [-20, 20]
      return float((rng.below(2) ? -1.0 : 1.0) * std::ldexp(1.0 + rng.uniform(), int(rng.below(41)) - 20));
    };
    const float x = value(), w = value();
    const double exact = double(x) * double(w);
    double terms = 0;
    const double split = ref::stem_product(x, w, kernels::StemMmaOperands::SplitBf16, &terms);
    const double bf16 = ref::stem_product(x, w, kernels::StemMmaOperands::Bf16, &terms);
    worst_split = std::max(worst_split, std::fabs(split - exact) / std::fabs(exact));
    worst_bf16 = std::max(worst_bf16, std::fabs(bf16 - exact) / std::fabs(exact));
  }
  INFO("worst relative error: split " << worst_split << ", bf16 " << worst_bf16);
  CHECK(worst_split <= 3 * u * u + 2 * u * u * u);
  CHECK(worst_bf16 <= 2 * u + u * u);
  CHECK(worst_split > 0);               // the split is not exact: the bound is what it is held to
  CHECK(worst_bf16 > 100 * worst_split);  // and it is that much finer than one bf16 part
}

TEST_CASE("stem_signs_fit: what stem_conv_fits takes, with 32 or 64 filters") {
  const ops::Conv2dParams s2{2, 3, 1}, s1{1, 1, 1};
  CHECK(packed::stem_signs_fit(Tensor::empty({64, 3, 7, 7}), s2));
  CHECK(packed::stem_signs_fit(Tensor::empty({32, 1, 3, 3}), s1));
  CHECK_FALSE(packed::stem_signs_fit(Tensor::empty({16, 3, 3, 3}), s1));  // half a word
  CHECK_FALSE(packed::stem_signs_fit(Tensor::empty({64, 5, 3, 3}), s1));  // what the kernel does not take at all
  CHECK_FALSE(packed::stem_signs_fit(Tensor::empty({64, 3, 3, 3}), ops::Conv2dParams{3, 1, 1}));
  CHECK_FALSE(packed::stem_signs_fit(Tensor(), s1));
  CHECK(kernels::stem_signs_fit(3, 64, 7, 7, 2, 3));
  CHECK_FALSE(kernels::stem_signs_fit(3, 16, 7, 7, 2, 3));
}

TEST_CASE("stem_conv_signs refuses what it does not take, with messages naming it") {
  const Tensor x = testing::random_tensor({2, 3, 12, 12}, 1), w = testing::random_tensor({32, 3, 3, 3}, 2);
  const Tensor v = testing::random_tensor({32}, 3);
  const ops::Conv2dParams p{1, 1, 1};
  using Catch::Contains;
  CHECK_NOTHROW(packed::stem_conv_signs(x, w, v, v, p, false));
  CHECK_THROWS_WITH(packed::stem_conv_signs(x, testing::random_tensor({16, 3, 3, 3}, 4), Tensor(), Tensor(), p, false),
                    Contains("O must be 32 or 64, not 16"));
  CHECK_THROWS_WITH(packed::stem_conv_signs(x, testing::random_tensor({48, 3, 3, 3}, 4), Tensor(), Tensor(), p, false),
                    Contains("stem_conv_signs: the direct kernel does not take"));
  CHECK_THROWS_WITH(packed::stem_conv_signs(packed::to_bf16(x), w, v, v, p, false), Contains("stem_conv_signs"));
  CHECK_THROWS_WITH(packed::stem_conv_signs(x, w, testing::random_tensor({8}, 6), v, p, false),
                    Contains("one value per filter"));
  CHECK_THROWS_WITH(packed::stem_conv_signs(x, w, v, v, ops::Conv2dParams{1, 1, 2}, false), Contains("groups 2"));
}

TEST_CASE("stem_conv_fits: C <= 4, O in {16, 32, 64}, windows up to 7x7, stride 1 or 2, groups 1") {
  const ops::Conv2dParams s2{2, 3, 1}, s1{1, 0, 1};
  CHECK(packed::stem_conv_fits(3, 64, 7, 7, s2));
  CHECK(packed::stem_conv_fits(1, 16, 1, 1, s1));
  CHECK(packed::stem_conv_fits(4, 32, 3, 5, ops::Conv2dParams{1, 9, 1}));
  CHECK_FALSE(packed::stem_conv_fits(5, 64, 7, 7, s2));   // channels
  CHECK_FALSE(packed::stem_conv_fits(3, 48, 7, 7, s2));   // filters
  CHECK_FALSE(packed::stem_conv_fits(3, 128, 3, 3, s1));
  CHECK_FALSE(packed::stem_conv_fits(3, 64, 8, 8, s2));   // window
  CHECK_FALSE(packed::stem_conv_fits(3, 64, 7, 7, ops::Conv2dParams{3, 3, 1}));  // stride
  CHECK_FALSE(packed::stem_conv_fits(3, 64, 7, 7, ops::Conv2dParams{2, 3, 3}));  // groups
  CHECK_FALSE(packed::stem_conv_fits(3, 64, 7, 7, ops::Conv2dParams{2, -1, 1}));
  CHECK(packed::stem_conv_fits(Tensor::empty({16, 3, 3, 3}), s1));
  CHECK_FALSE(packed::stem_conv_fits(Tensor(), s1));
}

TEST_CASE("MDQ_STEM_DIRECT: on by default, 0 turns the direct stem off") {
  const char* before = std::getenv("MDQ_STEM_DIRECT");
  const std::string saved = before ? before : "";
  ::unsetenv("MDQ_STEM_DIRECT");
  CHECK(packed::stem_direct_enabled());
  ::setenv("MDQ_STEM_DIRECT", "1", 1);
  CHECK(packed::stem_direct_enabled());
  ::setenv("MDQ_STEM_DIRECT", "0", 1);
  CHECK_FALSE(packed::stem_direct_enabled());
  // A Bf16Stem then runs its three passes; one the kernel does not take always does.
  const StemCase s{1, 3, 9, 9, 16, 3, 1, 1, true};
  const testing::StemInputs in = testing::stem_inputs(s, 5);
  infer::Bf16Stem stem = testing::stem_step(s, in, DType::BF16, Device::CPU);
  CHECK_FALSE(stem.direct());
  ::unsetenv("MDQ_STEM_DIRECT");
  CHECK(stem.direct());
  stem.direct_weight = Tensor();
  CHECK_FALSE(stem.direct());
  if (before) ::setenv("MDQ_STEM_DIRECT", saved.c_str(), 1);
}

TEST_CASE("stem_conv_nhwc refuses what it does not take, with messages naming the operand") {
  const Tensor x = testing::random_tensor({2, 3, 12, 12}, 1), w = testing::random_tensor({16, 3, 3, 3}, 2);
  const Tensor v = testing::random_tensor({16}, 3);
  const ops::Conv2dParams p{1, 1, 1};
  using Catch::Contains;
  CHECK_NOTHROW(packed::stem_conv_nhwc(x, w, v, v, p, true, DType::BF16));
  CHECK_THROWS_WITH(packed::stem_conv_nhwc(packed::to_bf16(x), w, v, v, p, true, DType::BF16), Contains("stem_conv_nhwc"));
  CHECK_THROWS_WITH(packed::stem_conv_nhwc(x.reshape({2, 3, 144}), w, v, v, p, true, DType::BF16),
                    Contains("stem_conv_nhwc"));
  CHECK_THROWS_WITH(packed::stem_conv_nhwc(x, w, v, v, p, true, DType::I32), Contains("writes bf16 or f32"));
  CHECK_THROWS_WITH(packed::stem_conv_nhwc(x, testing::random_tensor({16, 4, 3, 3}, 4), v, v, p, true, DType::F32),
                    Contains("does not take the 3 channels"));
  CHECK_THROWS_WITH(packed::stem_conv_nhwc(x, testing::random_tensor({24, 3, 3, 3}, 4), Tensor(), Tensor(), p, true,
                                           DType::F32),
                    Contains("the direct kernel does not take"));
  CHECK_THROWS_WITH(packed::stem_conv_nhwc(testing::random_tensor({1, 5, 8, 8}, 4),
                                           testing::random_tensor({16, 5, 3, 3}, 5), v, v, p, true, DType::F32),
                    Contains("the direct kernel does not take"));
  CHECK_THROWS_WITH(packed::stem_conv_nhwc(x, w, v, v, ops::Conv2dParams{3, 1, 1}, true, DType::F32),
                    Contains("stride 3"));
  CHECK_THROWS_WITH(packed::stem_conv_nhwc(x, w, testing::random_tensor({8}, 6), v, p, true, DType::F32),
                    Contains("one value per filter"));
  CHECK_THROWS_WITH(packed::stem_conv_nhwc(testing::random_tensor({1, 3, 2, 2}, 7), w, v, v, ops::Conv2dParams{1, 0, 1},
                                           true, DType::F32),
                    Contains("larger than the padded images"));
}

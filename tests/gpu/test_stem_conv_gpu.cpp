// The direct stem kernel (kernels/stem_conv.cu) against its CPU reference (engine/packed/
// stem_conv.h), and the plan step that uses it (infer::Bf16Stem):
//   - the kernel vs the CPU reference on the shapes of tests/support/stem_case.h, on ImageNet
//     ResNet-18's stem, and on batches with more tiles than resident CTAs (every persistent CTA
//     walks several tiles, both patch buffers in turn): f32 output bit for bit (the same fmas in
//     the same order), bf16 output equal;
//   - the launcher into a poisoned buffer: nothing written past the output;
//   - Bf16Stem's direct run vs its three passes (MDQ_STEM_DIRECT=0: bf16 images on cuDNN, the
//     affine pass) within 2^-8 (4 |scale| sum |x w| + 3 |scale d + shift|) per element (the
//     bound is derived at testing::outside_bf16_bound), in bf16 and f32 Dense;
//   - a stem the kernel does not take (5 channels, 24 filters, stride 3) falls back to the three
//     passes, with the same bits as those passes run by hand; the tensor call refuses it;
//   - the signs form (stem_conv_signs) vs the CPU reference's words, equal, on the 32- and
//     64-filter shapes, ResNet-18's stem, many tiles, and inputs that land on +0 and -0 (bit 1);
//     its launcher writes nothing past its output; Bf16Stem with signs equals the stem and
//     Binarize apart (the direct kernel's f32 output packed; the three passes' bf16 packed).
// Random non-zero inputs throughout. CPU twin: tests/cpu/test_stem_conv.cpp.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/infer/steps.h"
#include "engine/packed/bitpack.h"
#include "engine/packed/nhwc.h"
#include "engine/packed/stem_conv.h"
#include "tests/support/stem_case.h"
#include "tests/support/stem_signs_check.h"
#include "tests/support/testing.h"
#ifdef MDQ_HAS_CUDA
#include "kernels/stem_conv.h"
#endif

using namespace mdq;
using testing::StemCase;

#ifdef MDQ_HAS_CUDA
namespace {

std::vector<uint16_t> bf16_bits(const Tensor& t) {
  const Tensor h = t.cpu();
  const uint16_t* p = h.data<uint16_t>();
  return std::vector<uint16_t>(p, p + h.numel());
}

// The kernel on CUDA vs the CPU reference, both output types.
void check_against_cpu(const StemCase& s, uint64_t seed) {
  INFO(s.text());
  const testing::StemInputs in = testing::stem_inputs(s, seed);
  const Tensor xg = in.x.cuda(), wg = in.w.cuda(), sg = in.scale.cuda(), hg = in.shift.cuda();
  const Tensor want = packed::stem_conv_nhwc(in.x, in.w, in.scale, in.shift, s.params(), s.relu, DType::F32);
  const Tensor got = packed::stem_conv_nhwc(xg, wg, sg, hg, s.params(), s.relu, DType::F32);
  REQUIRE(got.shape() == want.shape());
  const std::vector<uint32_t> a = testing::bits(got), b = testing::bits(want);
  int64_t differ = 0;
  for (size_t i = 0; i < a.size(); ++i) differ += a[i] != b[i];
  CHECK(differ == 0);
  const Tensor want16 = packed::stem_conv_nhwc(in.x, in.w, in.scale, in.shift, s.params(), s.relu, DType::BF16);
  const Tensor got16 = packed::stem_conv_nhwc(xg, wg, sg, hg, s.params(), s.relu, DType::BF16);
  CHECK(bf16_bits(got16) == bf16_bits(want16));
}

// The signs form on CUDA vs the CPU reference, and vs the packed signs of the CUDA f32 form.
void check_signs_against_cpu(const StemCase& s, const testing::StemInputs& in) {
  INFO(s.text() << ", signs");
  const Tensor xg = in.x.cuda(), wg = in.w.cuda(), sg = in.scale.cuda(), hg = in.shift.cuda();
  const Tensor want = packed::stem_conv_signs(in.x, in.w, in.scale, in.shift, s.params(), s.relu);
  const Tensor got = packed::stem_conv_signs(xg, wg, sg, hg, s.params(), s.relu);
  REQUIRE(got.is_cuda());
  REQUIRE(got.shape() == want.shape());
  CHECK(testing::words(got) == testing::words(want));
  CHECK(testing::words(got) == testing::words(testing::signs_of_f32_form(xg, in, s)));
}

}  // namespace

TEST_CASE("stem_conv_signs on CUDA matches the CPU reference word for word") {
  uint64_t seed = 1500;
  int64_t cases = 0;
  for (const StemCase& s : testing::stem_cases())
    if (s.O % 32 == 0) check_signs_against_cpu(s, testing::stem_inputs(s, seed += 10)), ++cases;
  CHECK(cases >= 6);
  check_signs_against_cpu({2, 3, 224, 224, 64, 7, 2, 3, false}, testing::stem_inputs({2, 3, 224, 224, 64, 7, 2, 3, false}, 1600));
  // More tiles than resident CTAs (see the f32 twin below), both filter counts and strides.
  check_signs_against_cpu({150, 1, 20, 20, 32, 3, 1, 1, false}, testing::stem_inputs({150, 1, 20, 20, 32, 3, 1, 1, false}, 1610));
  check_signs_against_cpu({80, 3, 40, 40, 64, 7, 2, 3, false}, testing::stem_inputs({80, 3, 40, 40, 64, 7, 2, 3, false}, 1620));
  // Epilogues exactly at +0 and -0: bit 1 on both sides.
  for (const StemCase& s : {StemCase{3, 3, 19, 21, 64, 7, 2, 3, false}, StemCase{2, 1, 17, 18, 32, 3, 1, 1, false}})
    check_signs_against_cpu(s, testing::stem_tie_inputs(s, 1630));
  // No scale or shift (1, 0).
  const StemCase s{3, 4, 29, 31, 64, 7, 2, 3, false};
  testing::StemInputs in = testing::stem_inputs(s, 1640);
  in.scale = Tensor(), in.shift = Tensor();
  const Tensor want = packed::stem_conv_signs(in.x, in.w, Tensor(), Tensor(), s.params(), false);
  CHECK(testing::words(packed::stem_conv_signs(in.x.cuda(), in.w.cuda(), Tensor(), Tensor(), s.params(), false)) ==
        testing::words(want));
}

TEST_CASE("the signs launcher writes its words and nothing past them") {
  for (const StemCase& s : {StemCase{3, 3, 21, 19, 64, 7, 2, 3, false}, StemCase{2, 2, 17, 15, 32, 3, 1, 1, false}}) {
    INFO(s.text());
    const testing::StemInputs in = testing::stem_inputs(s, 1700);
    const Tensor xg = in.x.cuda(), wg = in.w.cuda(), sg = in.scale.cuda(), hg = in.shift.cuda();
    const int64_t n = s.N * s.OH() * s.OW() * s.O / 32;
    constexpr uint32_t kPoison = 0xdeadbeefu;
    Tensor y = Tensor::empty({n + 64}, DType::U32);
    std::fill(y.data<uint32_t>(), y.data<uint32_t>() + n + 64, kPoison);
    y = y.cuda();
    kernels::StemConvArgs a;
    a.x = xg.data<float>(), a.w = wg.data<float>(), a.scale = sg.data<float>(), a.shift = hg.data<float>();
    a.N = int(s.N), a.C = int(s.C), a.H = int(s.H), a.W = int(s.W), a.O = int(s.O), a.KH = int(s.K), a.KW = int(s.K);
    a.stride = int(s.stride), a.pad = int(s.pad), a.relu = s.relu;
    kernels::stem_conv_signs(a, y.data<uint32_t>());
    const std::vector<uint32_t> got = testing::words(y);
    const std::vector<uint32_t> want =
        testing::words(packed::stem_conv_signs(in.x, in.w, in.scale, in.shift, s.params(), s.relu));
    int64_t differ = 0, written_past = 0;
    for (int64_t i = 0; i < n; ++i) differ += got[size_t(i)] != want[size_t(i)];
    for (int64_t i = n; i < n + 64; ++i) written_past += got[size_t(i)] != kPoison;
    CHECK(differ == 0);
    CHECK(written_past == 0);
  }
}

TEST_CASE("Bf16Stem with signs on CUDA: the fused step vs the stem and Binarize apart, both ways") {
  for (const StemCase& s : {StemCase{2, 3, 224, 224, 64, 7, 2, 3, false}, StemCase{3, 4, 33, 21, 32, 3, 1, 1, false},
                            StemCase{3, 1, 18, 23, 64, 3, 1, 1, true}})
    for (DType dense : {DType::BF16, DType::F32}) {
      INFO(s.text() << (dense == DType::BF16 ? ", bf16" : ", f32") << " Dense");
      testing::check_fused_signs(s, 1800, dense, Device::CUDA);
    }
}

TEST_CASE("stem_conv_nhwc on CUDA matches the CPU reference: f32 bit for bit, bf16 equal") {
  uint64_t seed = 500;
  for (const StemCase& s : testing::stem_cases()) check_against_cpu(s, seed += 10);
  // No scale or shift (1, 0).
  const StemCase s{3, 3, 29, 31, 64, 7, 2, 3, true};
  const testing::StemInputs in = testing::stem_inputs(s, 9);
  const Tensor want = packed::stem_conv_nhwc(in.x, in.w, Tensor(), Tensor(), s.params(), true, DType::F32);
  const Tensor got = packed::stem_conv_nhwc(in.x.cuda(), in.w.cuda(), Tensor(), Tensor(), s.params(), true, DType::F32);
  CHECK(testing::bits(got) == testing::bits(want));
}

TEST_CASE("stem_conv_nhwc on CUDA: ImageNet ResNet-18's stem, and more tiles than resident CTAs") {
  check_against_cpu({2, 3, 224, 224, 64, 7, 2, 3, true}, 600);
  // 4 tiles an image: 150 images are 600 tiles, more than an H200's CTAs of any instantiation
  // (132 SMs x at most 4), so the persistent loop runs several tiles per CTA.
  check_against_cpu({150, 1, 20, 20, 16, 3, 1, 1, true}, 610);
  check_against_cpu({80, 3, 40, 40, 64, 7, 2, 3, false}, 620);
}

TEST_CASE("the stem launcher writes its output and nothing past it") {
  const StemCase s{3, 3, 21, 19, 32, 7, 2, 3, true};
  const testing::StemInputs in = testing::stem_inputs(s, 700);
  const Tensor xg = in.x.cuda(), wg = in.w.cuda(), sg = in.scale.cuda(), hg = in.shift.cuda();
  const int64_t n = s.N * s.OH() * s.OW() * s.O;
  Tensor y = Tensor::empty({n + 64});
  testing::poison(y);
  y = y.cuda();
  kernels::StemConvArgs a;
  a.x = xg.data<float>(), a.w = wg.data<float>(), a.scale = sg.data<float>(), a.shift = hg.data<float>();
  a.N = int(s.N), a.C = int(s.C), a.H = int(s.H), a.W = int(s.W), a.O = int(s.O), a.KH = int(s.K), a.KW = int(s.K);
  a.stride = int(s.stride), a.pad = int(s.pad), a.relu = s.relu;
  kernels::stem_conv_nhwc_f32(a, y.data<float>());
  const std::vector<float> got = y.cpu().to_vector();
  const std::vector<float> want =
      packed::stem_conv_nhwc(in.x, in.w, in.scale, in.shift, s.params(), s.relu, DType::F32).to_vector();
  int64_t differ = 0, written_past = 0;
  for (int64_t i = 0; i < n; ++i) differ += std::memcmp(&got[size_t(i)], &want[size_t(i)], 4) != 0;
  for (int64_t i = n; i < n + 64; ++i) written_past += !std::isnan(got[size_t(i)]);
  CHECK(differ == 0);
  CHECK(written_past == 0);
}

TEST_CASE("Bf16Stem on CUDA: the direct pass vs the three passes (MDQ_STEM_DIRECT=0), within bf16's rounding") {
  for (const StemCase& s : {StemCase{2, 3, 224, 224, 64, 7, 2, 3, true}, StemCase{3, 3, 37, 29, 64, 7, 2, 3, false},
                            StemCase{2, 4, 33, 21, 32, 3, 1, 1, true}, StemCase{3, 1, 18, 23, 16, 3, 1, 1, true}}) {
    for (DType dense : {DType::BF16, DType::F32}) {
      INFO(s.text() << (dense == DType::BF16 ? ", bf16" : ", f32") << " Dense");
      const testing::StemInputs in = testing::stem_inputs(s, 800);
      const infer::Bf16Stem stem = testing::stem_step(s, in, dense, Device::CUDA);
      REQUIRE(stem.direct());
      const testing::StemRuns r = testing::run_both_ways(stem, in.x);
      REQUIRE(r.direct.device() == Device::CUDA);
      REQUIRE(r.direct.dtype() == dense);
      REQUIRE(r.three_pass.dtype() == dense);
      CHECK(testing::outside_bf16_bound(s, in, r.direct, r.three_pass) == 0);
      // The direct run is the kernel's: the CPU reference's bits.
      const Tensor want = packed::stem_conv_nhwc(in.x, in.w, in.scale, in.shift, s.params(), s.relu, dense);
      if (dense == DType::F32) CHECK(testing::bits(r.direct) == testing::bits(want));
      else CHECK(bf16_bits(r.direct) == bf16_bits(want));
    }
  }
}

TEST_CASE("Bf16Stem on CUDA: a stem the direct kernel does not take runs its three passes") {
  for (const StemCase& s : {StemCase{2, 5, 19, 17, 16, 3, 1, 1, true}, StemCase{2, 3, 19, 17, 24, 3, 1, 1, true},
                            StemCase{2, 3, 23, 23, 16, 3, 3, 1, false}}) {
    INFO(s.text());
    const testing::StemInputs in = testing::stem_inputs(s, 900);
    const infer::Bf16Stem stem = testing::stem_step(s, in, DType::BF16, Device::CUDA);
    CHECK_FALSE(stem.direct_weight.defined());
    CHECK_FALSE(stem.direct());
    infer::Activation a{in.x.cuda()};
    stem.run(a);
    const Tensor x = packed::to_nhwc_bf16_padded(in.x.cuda(), stem.weight.dim(1));
    const Tensor y = packed::affine_nhwc(ops::conv2d_forward(x, stem.weight, Tensor(), s.params()), stem.scale,
                                         stem.shift, s.relu);
    CHECK(bf16_bits(a.x) == bf16_bits(y));
    CHECK_THROWS_WITH(packed::stem_conv_nhwc(in.x.cuda(), in.w.cuda(), stem.scale, stem.shift, s.params(), s.relu,
                                             DType::BF16),
                      Catch::Contains("the direct kernel does not take"));
  }
}

#else
TEST_CASE("stem conv GPU tests need a CUDA build") { SUCCEED("built without CUDA"); }
#endif

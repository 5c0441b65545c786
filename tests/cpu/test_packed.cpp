// Bit packing and packed convolutions on the CPU: packing round trips, bf16 rounding, and the
// W1A1 popc formulation (E12 with the padding mask) against a naive ±1 float convolution.
#include <cmath>

#include "engine/packed/bitpack.h"
#include "engine/packed/nhwc.h"
#include "engine/packed/packed_conv.h"
#include "tests/support/testing.h"

using namespace mdq;
using namespace mdq::packed;

namespace {

using testing::random_signs;
using testing::random_ternary;
using testing::words;

// OIHW f32 weights -> [O][KH][KW][C] (the NHWC-style layout the reference wants).
Tensor ohwi(const Tensor& oihw) { return to_nhwc(oihw, DType::F32); }

}  // namespace

TEST_CASE("bf16 conversion rounds to nearest even") {
  REQUIRE(float_to_bf16(1.f) == 0x3F80);
  REQUIRE(float_to_bf16(-1.f) == 0xBF80);
  REQUIRE(float_to_bf16(1.f + 1.f / 256) == 0x3F80);      // halfway, even neighbour below
  REQUIRE(float_to_bf16(1.f + 3.f / 256) == 0x3F82);      // halfway, even neighbour above
  REQUIRE(float_to_bf16(1.f + 1.1f / 256) == 0x3F81);     // above halfway
  REQUIRE(bf16_to_float(0x4040) == 3.f);
  REQUIRE(std::isnan(bf16_to_float(float_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  Tensor x = testing::random_tensor({1000}, 3, -100, 100);
  std::vector<float> back = to_f32(to_bf16(x)).to_vector(), orig = x.to_vector();
  for (size_t i = 0; i < back.size(); ++i) REQUIRE(std::fabs(back[i] - orig[i]) <= std::fabs(orig[i]) * (1.f / 256));
}

TEST_CASE("sign packing round-trips and zeroes the padded channel bits") {
  for (int64_t C : {1, 3, 31, 32, 33, 130, 257}) {
    Tensor x = testing::random_tensor({2, 3, C}, 100 + C);
    Tensor bits = pack_signs(x);
    REQUIRE(bits.shape() == Shape{2, 3, packed_words(C)});
    std::vector<float> u = unpack_signs(bits, C).to_vector(), v = x.to_vector();
    for (size_t i = 0; i < v.size(); ++i) REQUIRE(u[i] == (v[i] >= 0 ? 1.f : -1.f));
    const uint32_t* b = bits.data<uint32_t>();
    if (C % 32)
      for (int64_t r = 0; r < 6; ++r) REQUIRE((b[r * packed_words(C) + C / 32] >> (C % 32)) == 0u);
    // NCHW packing equals packing the NHWC transpose; bf16 packs the same signs.
    Tensor nchw = testing::random_tensor({2, C, 3, 5}, 200 + C);
    REQUIRE(words(pack_signs_nchw(nchw)) == words(pack_signs(to_nhwc(nchw, DType::F32))));
    REQUIRE(words(pack_signs(to_bf16(x))) == words(bits));
  }
  // Known bits: channel c is bit c % 32 of word c / 32.
  Tensor x = Tensor::from_vector({1, -1, 1, 1, -1}, {1, 5});
  REQUIRE(pack_signs(x).data<uint32_t>()[0] == 0b01101u);
}

TEST_CASE("ternary packing round-trips through two planes") {
  for (int64_t C : {3, 33, 257}) {
    Tensor x = random_ternary({4, C}, 300 + C);
    TernaryPlanes t = pack_ternary(x);
    REQUIRE(unpack_ternary(t, C).to_vector() == x.to_vector());
    PackedWeights w = pack_ternary_weights(random_ternary({5, C, 3, 3}, 400 + C));
    REQUIRE(w.ternary());
    REQUIRE(w.sign.shape() == Shape{5, 3, 3, packed_words(C)});
  }
}

TEST_CASE("W1A1 popc convolution (E12 with the padding mask) equals the ±1 float convolution exactly") {
  struct Case { int64_t N, C, H, W, O, K, stride, pad; };
  const Case cases[] = {
      {1, 3, 7, 7, 5, 3, 1, 1},   {2, 33, 9, 9, 8, 3, 2, 1},   {1, 130, 7, 9, 33, 3, 1, 0},
      {3, 257, 9, 7, 4, 3, 2, 0}, {2, 64, 8, 8, 64, 3, 1, 1},  {1, 33, 7, 7, 3, 1, 1, 0},
      {2, 5, 9, 9, 7, 1, 2, 0},   {1, 40, 9, 9, 6, 5, 2, 2},   {1, 257, 7, 7, 9, 3, 1, 1},
  };
  for (const Case& c : cases) {
    INFO("N " << c.N << " C " << c.C << " H " << c.H << " W " << c.W << " O " << c.O << " K " << c.K << " stride "
              << c.stride << " pad " << c.pad);
    Tensor x = random_signs({c.N, c.H, c.W, c.C}, 7 * c.C + c.H);
    Tensor wf = random_signs({c.O, c.C, c.K, c.K}, 11 * c.C + c.O);
    ConvGeometry g{c.stride, c.pad};
    Tensor expected = conv2d_nhwc_reference(x, ohwi(wf), g);
    Tensor got = binary_conv2d(pack_signs(x), pack_binary_weights(wf), g);
    REQUIRE(got.dtype() == DType::I32);
    REQUIRE(got.shape() == expected.shape());
    std::vector<int32_t> gv = got.to_vector_i32();
    std::vector<float> ev = expected.to_vector();
    for (size_t i = 0; i < ev.size(); ++i) {
      INFO("element " << i);
      REQUIRE(gv[i] == static_cast<int32_t>(ev[i]));
    }
  }
}

TEST_CASE("W1A1 linear equals the ±1 matrix product") {
  for (int64_t C : {3, 32, 130, 257}) {
    Tensor x = random_signs({5, C}, 500 + C), wf = random_signs({7, C}, 600 + C);
    Tensor got = binary_linear(pack_signs(x), pack_binary_weights(wf));
    REQUIRE(got.shape() == Shape{5, 7});
    for (int64_t n = 0; n < 5; ++n)
      for (int64_t o = 0; o < 7; ++o) {
        float d = 0;
        for (int64_t k = 0; k < C; ++k) d += x.data<float>()[n * C + k] * wf.data<float>()[o * C + k];
        REQUIRE(got.data<int32_t>()[n * 7 + o] == static_cast<int32_t>(d));
      }
  }
}

TEST_CASE("W1A1 epilogues: affine, ReLU, and sign + re-pack equal packing the affine result") {
  const int64_t O = 37;
  Tensor x = random_signs({2, 9, 9, 33}, 21), wf = random_signs({O, 33, 3, 3}, 22);
  PackedWeights w = pack_binary_weights(wf);
  Tensor xb = pack_signs(x);
  ConvGeometry g{1, 1};
  Tensor scale = testing::random_tensor({O}, 23, 0.5f, 2.f), shift = testing::random_tensor({O}, 24, -3.f, 3.f);
  Tensor d = binary_conv2d(xb, w, g);
  Tensor affine = Tensor::empty(d.shape());
  for (int64_t i = 0; i < d.numel(); ++i)
    affine.data<float>()[i] = scale.data<float>()[i % O] * static_cast<float>(d.data<int32_t>()[i]) + shift.data<float>()[i % O];
  testing::require_close(binary_conv2d(xb, w, g, {BinaryOutputMode::Affine, scale, shift}), affine, 1e-6f, 0, "affine");
  Tensor relu = binary_conv2d(xb, w, g, {BinaryOutputMode::AffineRelu, scale, shift});
  for (int64_t i = 0; i < relu.numel(); ++i) REQUIRE(relu.data<float>()[i] == std::max(affine.data<float>()[i], 0.f));
  Tensor packed = binary_conv2d(xb, w, g, {BinaryOutputMode::SignPack, scale, shift});
  REQUIRE(packed.shape() == Shape{2, 9, 9, 2});
  REQUIRE(words(packed) == words(pack_signs(affine)));
}

TEST_CASE("W1A1 Int16 output: the exact sums as int16, up to K = 32767; a larger K is refused") {
  // A 3x3 conv and a 1x1 stride-2 shortcut, odd channel counts.
  for (int64_t k : {3, 1}) {
    const int64_t stride = k == 1 ? 2 : 1, pad = k / 2;
    INFO("kernel " << k << " stride " << stride);
    Tensor xb = pack_signs(random_signs({3, 9, 7, 37}, 25 + k));
    PackedWeights w = pack_binary_weights(random_signs({19, 37, k, k}, 26 + k));
    const ConvGeometry g{stride, pad};
    Tensor d16 = binary_conv2d(xb, w, g, {BinaryOutputMode::Int16});
    Tensor d = binary_conv2d(xb, w, g);
    REQUIRE(d16.dtype() == DType::I16);
    REQUIRE(d16.shape() == d.shape());
    const std::vector<int16_t> got = testing::int16s(d16);
    for (size_t i = 0; i < got.size(); ++i) REQUIRE(got[i] == d.data<int32_t>()[i]);
  }
  // |d| <= K = C for a 1x1 conv: K = 32767 reaches int16's ends (all-equal signs give d = ±K).
  auto ones = [](int64_t C, float v) { return Tensor::full({1, 1, 1, C}, v); };
  PackedWeights w_max = pack_binary_weights(Tensor::full({1, kInt16MaxK, 1, 1}, 1.f));
  for (float v : {1.f, -1.f}) {
    Tensor d16 = binary_conv2d(pack_signs(ones(kInt16MaxK, v)), w_max, {}, {BinaryOutputMode::Int16});
    REQUIRE(testing::int16s(d16)[0] == static_cast<int16_t>(v * kInt16MaxK));
  }
  PackedWeights w_over = pack_binary_weights(random_signs({2, kInt16MaxK + 1, 1, 1}, 27));
  REQUIRE_THROWS_WITH(binary_conv2d(pack_signs(ones(kInt16MaxK + 1, 1.f)), w_over, {}, {BinaryOutputMode::Int16}),
                      Catch::Contains("K = 32768") && Catch::Contains("32767"));
  REQUIRE(binary_conv2d(pack_signs(ones(kInt16MaxK + 1, 1.f)), w_over, {}).dtype() == DType::I32);  // Int32 takes it
}

TEST_CASE("W1A1 block end: affine + residual and its packed signs; bad residual refused") {
  const int64_t O = 40;
  Tensor xb = pack_signs(random_signs({2, 6, 6, 33}, 41));
  PackedWeights w = pack_binary_weights(random_signs({O, 33, 3, 3}, 42));
  Tensor scale = testing::random_tensor({O}, 43, 0.5f, 2.f), shift = testing::random_tensor({O}, 44, -3.f, 3.f);
  Tensor residual = testing::random_tensor({2, 6, 6, O}, 45, -5.f, 5.f);
  ResidualOutput r = binary_conv2d_residual(xb, w, {1, 1}, scale, shift, residual);
  Tensor affine = binary_conv2d(xb, w, {1, 1}, {BinaryOutputMode::Affine, scale, shift});
  for (int64_t i = 0; i < affine.numel(); ++i)
    REQUIRE(r.y.data<float>()[i] == affine.data<float>()[i] + residual.data<float>()[i]);
  REQUIRE(words(r.bits) == words(pack_signs(r.y)));
  REQUIRE_THROWS_WITH(binary_conv2d_residual(xb, w, {1, 1}, scale, shift, Tensor::zeros({2, 6, 6, O - 1})),
                      Catch::Contains("residual"));
}

TEST_CASE("W1A1 block end with a shortcut conv: the signs of affine + the shortcut's affine; bad shapes refused") {
  const int64_t N = 2, C = 40, H = 9, O = 70;  // a 1x1 stride-2 shortcut: 9x9 -> 5x5
  Tensor x = pack_signs(random_signs({N, H, H, C}, 51));
  Tensor h = pack_signs(random_signs({N, 5, 5, O}, 52));
  PackedWeights w = pack_binary_weights(random_signs({O, O, 3, 3}, 53));
  PackedWeights ws = pack_binary_weights(random_signs({O, C, 1, 1}, 54));
  Tensor scale = testing::random_tensor({O}, 55, 0.02f, 0.1f), shift = testing::random_tensor({O}, 56, -1.f, 1.f);
  Tensor s_scale = testing::random_tensor({O}, 57, 0.05f, 0.2f), s_shift = testing::random_tensor({O}, 58, -1.f, 1.f);
  bool fused = true;
  Tensor got = binary_conv2d_shortcut_signs(h, w, {1, 1}, scale, shift, x, {ws, {2, 0}, s_scale, s_shift}, &fused);
  CHECK_FALSE(fused);  // the CPU runs the two steps
  Tensor skip = binary_conv2d(x, ws, {2, 0}, {BinaryOutputMode::Affine, s_scale, s_shift});
  Tensor y = binary_conv2d_residual(h, w, {1, 1}, scale, shift, skip).y;
  REQUIRE(words(got) == words(pack_signs(y)));
  REQUIRE_THROWS_WITH(binary_conv2d_shortcut_signs(h, w, {1, 1}, scale, shift, x, {ws, {1, 0}, s_scale, s_shift}),
                      Catch::Contains("shortcut's output"));
}

TEST_CASE("W1A1 block end with the identity skip as bits: the signs of affine + ±1, bit for bit") {
  // O = 40 (a partial word), scales k/8 so that scale·d is exact (the reference's sum is then the
  // same with or without a fused multiply-add) and shifts on the grid of 1/8, so that affine + s
  // hits 0 exactly on some outputs: the ties where >= 0 must still give 1; a negative and a zero
  // scale flip and freeze the comparison.
  const int64_t O = 40;
  Tensor xb = pack_signs(random_signs({2, 6, 6, 33}, 51));
  PackedWeights w = pack_binary_weights(random_signs({O, 33, 3, 3}, 52));
  std::vector<float> sc(O), sh(O);
  for (int64_t o = 0; o < O; ++o) {
    sc[o] = static_cast<float>(o % 7 - 2) / 8.f;                // -2/8 .. 4/8, 0 included
    sh[o] = static_cast<float>(static_cast<int>(o * 37 % 41) - 20) / 8.f;
  }
  Tensor scale = Tensor::from_vector(sc, {O}), shift = Tensor::from_vector(sh, {O});
  Tensor skip = pack_signs(random_signs({2, 6, 6, O}, 53));
  Tensor got = binary_conv2d_skip_signs(xb, w, {1, 1}, scale, shift, skip);
  ResidualOutput ref = binary_conv2d_residual(xb, w, {1, 1}, scale, shift, unpack_signs(skip, O));
  REQUIRE(words(got) == words(ref.bits));
  int64_t ties = 0;
  for (float v : ref.y.to_vector()) ties += v == 0.f;
  CHECK(ties > 0);  // the case reaches the boundary it is there to check
  // The thresholds made once give the same; without the sum, the residual end gives the same signs.
  REQUIRE(words(binary_conv2d_skip_signs(xb, w, {1, 1}, scale, shift, skip,
                                         skip_sign_thresholds(w, scale, shift, Device::CPU))) == words(got));
  ResidualOutput signs_only = binary_conv2d_residual(xb, w, {1, 1}, scale, shift, unpack_signs(skip, O), false);
  REQUIRE_FALSE(signs_only.y.defined());
  REQUIRE(words(signs_only.bits) == words(ref.bits));
  // Bad skip shapes and thresholds are named.
  REQUIRE_THROWS_WITH(binary_conv2d_skip_signs(xb, w, {1, 1}, scale, shift, pack_signs(random_signs({2, 6, 6, 65}, 54))),
                      Catch::Contains("skip bits"));
  REQUIRE_THROWS_WITH(binary_conv2d_skip_signs(xb, w, {1, 1}, scale, shift, skip, sign_thresholds(w, scale, shift, Device::CPU)),
                      Catch::Contains("thresholds"));
}

TEST_CASE("sign thresholds equal the sign of scale d + shift for every possible d") {
  // Positive, negative, zero and tiny scales; shifts on and off the integer grid; NaN.
  const std::vector<float> scales = {1.f, 0.37f, -0.37f, 0.f, -2.5f, 1e-8f, 3.f, std::nanf("")};
  const std::vector<float> shifts = {0.f, 0.185f, -3.f, 5.f, -1e9f, 1e9f, 2.f, 1.f};
  const int64_t O = static_cast<int64_t>(scales.size());
  PackedWeights w = pack_binary_weights(random_signs({O, 5, 3, 3}, 31));  // |d| <= 45
  Tensor t = sign_thresholds(w, Tensor::from_vector(scales, {O}), Tensor::from_vector(shifts, {O}), Device::CPU);
  REQUIRE(t.shape() == Shape{2, O});
  for (int64_t o = 0; o < O; ++o)
    for (int64_t d = -45; d <= 45; ++d) {
      INFO("channel " << o << " scale " << scales[o] << " shift " << shifts[o] << " d " << d);
      volatile float product = scales[o] * static_cast<float>(d);
      const bool expected = product + shifts[o] >= 0.f;
      const bool got = (d >= t.data<int32_t>()[o]) != (t.data<int32_t>()[O + o] != 0);
      REQUIRE(got == expected);
    }
}

TEST_CASE("W1A16 and W2A16 match a float convolution with the unpacked weights") {
  // A hand case: 1x1 kernel, 2 channels: y = 0.5*1 + 0.25*(-1) = 0.25 and 0.5*(-1) + 0.25*0 = -0.5.
  Tensor x = to_bf16(Tensor::from_vector({0.5f, 0.25f}, {1, 1, 1, 2}));
  Tensor wt = Tensor::from_vector({1, -1, -1, 0}, {2, 2, 1, 1});
  REQUIRE(w1a16_conv2d(x, pack_ternary_weights(wt)).to_vector() == std::vector<float>{0.25f, -0.5f});
  Tensor wb = Tensor::from_vector({1, -1, -1, -1}, {2, 2, 1, 1});
  REQUIRE(w1a16_conv2d(x, pack_binary_weights(wb)).to_vector() == std::vector<float>{0.25f, -0.75f});

  // Random: inputs rounded to bf16, accumulation exact enough that only the bf16 output rounds.
  Tensor xf = testing::random_tensor({2, 7, 9, 33}, 31);
  Tensor w2 = random_ternary({6, 33, 3, 3}, 32);
  Tensor expected = conv2d_nhwc_reference(to_f32(to_bf16(xf)), ohwi(w2), {2, 1});
  testing::require_close(w1a16_conv2d(to_bf16(xf), pack_ternary_weights(w2), {2, 1}), expected, 1e-5f, 1e-5f, "w2a16");
  FloatOutput bf{{}, {}, true, DType::BF16};
  Tensor got = to_f32(w1a16_conv2d(to_bf16(xf), pack_ternary_weights(w2), {2, 1}, bf));
  Tensor relu = expected.clone();
  for (int64_t i = 0; i < relu.numel(); ++i) relu.data<float>()[i] = std::max(relu.data<float>()[i], 0.f);
  testing::require_close(got, relu, 1e-6f, 1.f / 256, "w2a16 relu bf16 out");
}

TEST_CASE("packed ops reject mismatched operands with messages that name them") {
  PackedWeights wt = pack_ternary_weights(random_ternary({4, 8, 3, 3}, 1));
  Tensor xb = pack_signs(random_signs({1, 5, 5, 8}, 2));
  REQUIRE_THROWS_WITH(binary_conv2d(xb, wt, {}), Catch::Contains("W1A1 takes binary weights"));
  PackedWeights wb = pack_binary_weights(random_signs({4, 40, 3, 3}, 3));
  REQUIRE_THROWS_WITH(binary_conv2d(xb, wb, {}), Catch::Contains("u32[1, 5, 5, 1]@cpu"));
  REQUIRE_THROWS_WITH(w1a16_conv2d(to_bf16(random_signs({1, 5, 5, 8}, 4)), wb, {}), Catch::Contains("expect 40"));
}

// The parts of an inference plan (engine/infer/lower.h) on the CPU: BN folding against hand
// values, the integer sign thresholds against the float engine's BN on every d, and the NHWC and
// packed-bits passes (engine/packed/nhwc.h, binary_act.h) against the float engine's NCHW ops,
// exactly. The GPU twins: tests/gpu/test_infer_parts_gpu.cpp.
#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

#include "engine/infer/fold.h"
#include "engine/ops/activation.h"
#include "engine/ops/batchnorm.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/pooling.h"
#include "engine/packed/binary_act.h"
#include "engine/packed/bitpack.h"
#include "engine/packed/nhwc.h"
#include "kernels/nhwc_bf16.h"
#include "tests/support/testing.h"

using namespace mdq;

namespace {

// Random bits for C channels: the signs of random values, packed.
Tensor random_bits(int64_t N, int64_t C, int64_t H, int64_t W, uint64_t seed) {
  return packed::pack_signs_nchw(testing::random_tensor({N, C, H, W}, seed));
}

}  // namespace

TEST_CASE("fold_batchnorm matches BN(d + b) = scale d + shift") {
  nn::BatchNorm2d bn(2);
  bn.running_mean().copy_from(Tensor::from_vector({0.5f, -2.f}, {2}));
  bn.running_var().copy_from(Tensor::from_vector({3.f, 0.25f}, {2}));
  const double e = 1e-5;
  infer::FoldedAffine f = infer::fold_batchnorm(Tensor::from_vector({1.f, -1.f}, {2}), &bn, 2);
  const std::vector<float> sc = f.scale.to_vector(), sh = f.shift.to_vector();
  CHECK(sc[0] == Approx(1.0 / std::sqrt(3.0 + e)).epsilon(1e-7));
  CHECK(sc[1] == Approx(1.0 / std::sqrt(0.25 + e)).epsilon(1e-7));
  CHECK(sh[0] == Approx((1.0 - 0.5) / std::sqrt(3.0 + e)).epsilon(1e-7));
  CHECK(sh[1] == Approx((-1.0 + 2.0) / std::sqrt(0.25 + e)).epsilon(1e-7));
  // No bias: shift = -mean · scale. No BN: scale undefined (1), shift = bias.
  infer::FoldedAffine g = infer::fold_batchnorm(Tensor(), &bn, 2);
  CHECK(g.shift.to_vector()[1] == Approx(2.0 / std::sqrt(0.25 + e)).epsilon(1e-7));
  infer::FoldedAffine h = infer::fold_batchnorm(Tensor::from_vector({1.f, -1.f}, {2}), nullptr, 2);
  CHECK(!h.scale.defined());
  CHECK(h.shift.to_vector() == std::vector<float>{1.f, -1.f});
}

TEST_CASE("NHWC references: layout round trip and max pool equal the NCHW float ops") {
  for (auto [k, s, p] : {std::tuple<int, int, int>{2, 2, 0}, {3, 2, 1}, {3, 1, 1}, {2, 1, 0}}) {
    const int N = 2, C = 5, H = 7, W = 6;
    INFO("k " << k << " s " << s << " p " << p);
    Tensor x = packed::to_f32(packed::to_bf16(testing::random_tensor({N, C, H, W}, 7 + k + s + p)));  // bf16-exact
    Tensor nhwc = Tensor::empty({N, H, W, C}, DType::BF16);
    kernels::reference::nchw_f32_to_nhwc_bf16(x.data<float>(), nhwc.data<uint16_t>(), N, C, H * W);
    Tensor back = Tensor::empty({N, C, H, W}, DType::BF16);
    kernels::reference::nhwc_to_nchw_bf16(nhwc.data<uint16_t>(), back.data<uint16_t>(), N, H * W, C);
    testing::require_close(packed::to_f32(back), x, 0.f, 0.f, "NCHW -> NHWC -> NCHW");

    const int OH = ops::window_output_size(H, k, s, p), OW = ops::window_output_size(W, k, s, p);
    Tensor y = Tensor::empty({N, OH, OW, C}, DType::BF16);
    kernels::reference::maxpool_nhwc_bf16(nhwc.data<uint16_t>(), y.data<uint16_t>(), N, H, W, C, k, s, p);
    Tensor want = ops::max_pool2d_forward(x, k, s, p).out;
    REQUIRE(want.shape() == Shape({N, C, OH, OW}));
    testing::require_close(packed::to_nchw(packed::to_f32(y)), want, 0.f, 0.f, "max pool");
  }
}

TEST_CASE("packed NHWC passes in f32 and bf16 equal the float engine's NCHW ops") {
  const int64_t N = 2, C = 5, H = 7, W = 6;
  // bf16-exact values, so both element types must give the float engine's results exactly.
  const Tensor x = packed::to_f32(packed::to_bf16(testing::random_tensor({N, C, H, W}, 17)));
  const Tensor r = packed::to_f32(packed::to_bf16(testing::random_tensor({N, C, H, W}, 18)));
  auto nchw_f32 = [](const Tensor& t) { return packed::to_nchw(t.dtype() == DType::BF16 ? packed::to_f32(t) : t); };
  for (DType dt : {DType::F32, DType::BF16}) {
    INFO(dtype_name(dt));
    const Tensor xh = packed::to_nhwc(x, dt), rh = packed::to_nhwc(r, dt);
    REQUIRE(xh.shape() == Shape({N, H, W, C}));
    REQUIRE(xh.dtype() == dt);
    testing::require_close(nchw_f32(xh), x, 0.f, 0.f, "to_nhwc, to_nchw");
    testing::require_close(nchw_f32(packed::max_pool_nhwc(xh, 3, 2, 1)), ops::max_pool2d_forward(x, 3, 2, 1).out, 0.f,
                           0.f, "max_pool_nhwc");
    // Sums of 42 bf16 values in f32 in pixel order vs the float engine's order: a few f32 ulps.
    Tensor avg = packed::global_avg_pool_nhwc(xh);
    if (dt == DType::BF16) avg = packed::to_f32(avg);
    testing::require_close(avg, ops::global_avg_pool_forward(x), dt == DType::BF16 ? 8e-3f : 2e-6f,
                           dt == DType::BF16 ? 8e-3f : 2e-6f, "global_avg_pool_nhwc");
    // x + r is exact in f32 for two bf16 values of similar size only up to one rounding; bf16
    // output rounds once more.
    const Tensor sum = ops::relu_forward(ops::add(x, r));
    testing::require_close(nchw_f32(packed::add_nhwc(xh, rh, true)), sum, dt == DType::BF16 ? 8e-3f : 0.f,
                           dt == DType::BF16 ? 8e-3f : 0.f, "add_nhwc + relu");
    testing::require_close(nchw_f32(packed::add_nhwc(xh, Tensor(), true)), ops::relu_forward(x), 0.f, 0.f,
                           "add_nhwc: relu alone");
  }
  CHECK_THROWS(packed::max_pool_nhwc(packed::to_nhwc(x, DType::F32), 2, 2, 2));  // padding > kernel / 2
  CHECK_THROWS(packed::add_nhwc(packed::to_nhwc(x, DType::F32), packed::to_nhwc(x, DType::BF16), false));
}

TEST_CASE("to_nhwc_bf16_padded is to_nhwc's bf16 with zero channels after; affine_nhwc is the folded BN + ReLU") {
  const int64_t N = 2, C = 3, H = 5, W = 7;
  const Tensor x = testing::random_tensor({N, C, H, W}, 19, -3.f, 3.f);
  const std::vector<float> plain = packed::to_f32(packed::to_nhwc(x, DType::BF16)).to_vector();
  for (int64_t Cy : {3, 8, 11, 16}) {
    INFO("channels " << Cy);
    const Tensor y = packed::to_nhwc_bf16_padded(x, Cy);
    REQUIRE(y.shape() == Shape({N, H, W, Cy}));
    REQUIRE(y.dtype() == DType::BF16);
    const std::vector<float> got = packed::to_f32(y).to_vector();
    bool same = true;
    for (int64_t p = 0; p < N * H * W; ++p)
      for (int64_t c = 0; c < Cy; ++c)
        same &= got[p * Cy + c] == (c < C ? plain[p * C + c] : 0.f);
    CHECK(same);
  }
  CHECK_THROWS(packed::to_nhwc_bf16_padded(x, 2));  // fewer channels than the images have

  // affine_nhwc: fma(x, scale, shift) in f32, ReLU, one rounding for bf16: the reference's own
  // arithmetic, checked here against a plain loop; either operand may be left out.
  const Tensor xh = packed::to_nhwc(x, DType::F32);
  const Tensor scale = Tensor::from_vector({0.5f, -2.f, 1.25f}, {C}), shift = Tensor::from_vector({0.1f, 0.f, -1.f}, {C});
  const std::vector<float> xv = xh.to_vector(), sc = scale.to_vector(), sh = shift.to_vector();
  for (bool relu : {false, true})
    for (DType dt : {DType::F32, DType::BF16}) {
      INFO("relu " << relu << " " << dtype_name(dt));
      const Tensor in = dt == DType::BF16 ? packed::to_bf16(xh) : xh;
      const std::vector<float> iv = (dt == DType::BF16 ? packed::to_f32(in) : in).to_vector();
      Tensor got = packed::affine_nhwc(in, scale, shift, relu);
      REQUIRE(got.dtype() == dt);
      if (dt == DType::BF16) got = packed::to_f32(got);
      std::vector<float> want(iv.size());
      for (size_t i = 0; i < iv.size(); ++i) {
        float v = std::fma(iv[i], sc[i % C], sh[i % C]);
        if (relu) v = std::max(v, 0.f);
        want[i] = dt == DType::BF16 ? bf16_to_float(float_to_bf16(v)) : v;
      }
      testing::require_close(got, Tensor::from_vector(want, xh.shape()), 0.f, 0.f, "affine_nhwc");
    }
  testing::require_close(packed::affine_nhwc(xh, Tensor(), Tensor(), true), packed::add_nhwc(xh, Tensor(), true), 0.f,
                         0.f, "affine_nhwc without scale and shift: the ReLU alone");
  CHECK_THROWS(packed::affine_nhwc(xh, Tensor::zeros({C + 1}), Tensor(), false));  // one scale per channel
}

TEST_CASE("split_bf16_nhwc reference: hi is bf16(a), lo is bf16(a - hi), hi + lo within 2^-16 of a") {
  const int64_t P = 3;
  const int C = 5;
  // bf16 keeps 8 significant bits: its ulp at 1 is 2^-7. 1 + 2^-9 + 2^-13 is below the halfway
  // point: hi = 1, lo = 2^-9 + 2^-13 exactly.
  const float a0 = 1.f + std::ldexp(1.f, -9) + std::ldexp(1.f, -13);
  // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even -> hi = 1, lo = 2^-8.
  const float a1 = 1.f + std::ldexp(1.f, -8);
  Tensor x = testing::random_tensor({P, C}, 77, -1000.f, 1000.f);
  x.data<float>()[0] = a0;
  x.data<float>()[1] = a1;
  x.data<float>()[2] = -3.f;  // exact in bf16: lo = 0
  x.data<float>()[3] = INFINITY;  // lo = 0, not NaN
  Tensor y = Tensor::empty({P, 2 * C}, DType::BF16);
  kernels::reference::split_bf16_nhwc(x.data<float>(), y.data<uint16_t>(), P, C);
  const uint16_t* q = y.data<uint16_t>();
  auto f = [](uint16_t b) { return bf16_to_float(b); };
  CHECK(f(q[0]) == 1.f);
  CHECK(f(q[C]) == std::ldexp(1.f, -9) + std::ldexp(1.f, -13));
  CHECK(f(q[1]) == 1.f);
  CHECK(f(q[C + 1]) == std::ldexp(1.f, -8));
  CHECK(f(q[2]) == -3.f);
  CHECK(f(q[C + 2]) == 0.f);
  CHECK(f(q[3]) == INFINITY);
  CHECK(f(q[C + 3]) == 0.f);
  for (int64_t p = 0; p < P; ++p)
    for (int c = 0; c < C; ++c) {
      const float a = x.data<float>()[p * C + c];
      if (!std::isfinite(a)) continue;
      const uint16_t hi = q[p * 2 * C + c], lo = q[p * 2 * C + C + c];
      INFO("p " << p << " c " << c << " a " << a);
      CHECK(hi == float_to_bf16(a));
      CHECK(lo == float_to_bf16(a - f(hi)));
      CHECK(std::fabs(static_cast<double>(f(hi)) + f(lo) - a) <= std::ldexp(std::fabs(a), -16));
    }
  // The tensor call a W1A16 layer makes is this reference on the CPU.
  const Tensor t = packed::split_bf16(x.reshape({1, P, 1, C}));
  REQUIRE(t.shape() == Shape({1, P, 1, 2 * C}));
  for (int64_t i = 0; i < t.numel(); ++i) CHECK(t.data<uint16_t>()[i] == q[i]);
}

TEST_CASE("max_pool2d_bits is the float engine's max pool of the ±1 values; unpack_signs_nchw inverts the pack") {
  for (auto [k, s, p] : {std::tuple<int, int, int>{2, 2, 0}, {3, 2, 1}, {3, 1, 1}, {2, 1, 0}, {1, 1, 0}}) {
    for (int64_t C : {5, 32, 37, 64}) {
      const int64_t N = 2, H = 7, W = 6;
      INFO("k " << k << " s " << s << " p " << p << " C " << C);
      Tensor x = testing::random_tensor({N, C, H, W}, 3 + C + k);
      Tensor bits = packed::pack_signs_nchw(x);
      Tensor pm = x;  // the ±1 values
      for (int64_t i = 0; i < pm.numel(); ++i) pm.data<float>()[i] = x.data<float>()[i] >= 0.f ? 1.f : -1.f;
      testing::require_close(packed::unpack_signs_nchw(bits, C), pm, 0.f, 0.f, "unpack_signs_nchw");
      Tensor want = ops::max_pool2d_forward(pm, k, s, p).out;
      Tensor got = packed::max_pool2d_bits(bits, k, s, p);
      REQUIRE(got.shape() == Shape({N, want.dim(2), want.dim(3), packed::packed_words(C)}));
      testing::require_close(packed::unpack_signs_nchw(got, C), want, 0.f, 0.f, "max_pool2d_bits");
    }
  }
  CHECK_THROWS(packed::max_pool2d_bits(random_bits(1, 8, 4, 4, 1), 2, 2, 2));  // padding > kernel / 2
}

TEST_CASE("global_avg_pool_bits is the float engine's global average pool of the unpacked ±1 values, bit for bit") {
  // 1x1 (a vector's one pixel), odd maps, 7x7 (ResNet-18's last map), channels around word edges.
  for (auto [H, W] : {std::pair<int64_t, int64_t>{1, 1}, {3, 5}, {7, 7}, {4, 9}})
    for (int64_t C : {1, 5, 32, 37, 64, 100}) {
      INFO(H << "x" << W << " C " << C);
      const Tensor bits = packed::pack_signs_nchw(testing::random_tensor({3, C, H, W}, 11 + C + H * W));
      const Tensor got = packed::global_avg_pool_bits(bits, C);
      REQUIRE(got.shape() == Shape({3, C}));
      CHECK(testing::bits(got) == testing::bits(ops::global_avg_pool_forward(packed::unpack_signs_nchw(bits, C))));
    }
  CHECK_THROWS_WITH(packed::global_avg_pool_bits(random_bits(1, 2, 2, 2, 1), 65), Catch::Contains("does not hold 65"));
}

TEST_CASE("sign_thresholds_of: (d >= dmin) xor flip is the float engine's BN(d + bias) >= 0 for every d") {
  // 1x1 conv over C = 3 channels: |d| <= 3. Channels: gamma > 0, gamma < 0, gamma = 0 with beta
  // >= 0 and < 0 (constant signs), a mean on an exact integer (BN = 0 there: sign(0) = +1).
  const int64_t O = 5, C = 3, range = 3;
  packed::PackedWeights w = packed::pack_binary_weights(testing::random_signs({O, C, 1, 1}, 1));
  nn::BatchNorm2d bn(O, /*affine=*/true);
  bn.running_mean().copy_from(Tensor::from_vector({0.3f, -1.2f, 0.f, 0.f, 1.f}, {O}));
  bn.running_var().copy_from(Tensor::from_vector({2.f, 0.5f, 1.f, 1.f, 3.f}, {O}));
  bn.weight().value().copy_from(Tensor::from_vector({1.5f, -0.7f, 0.f, 0.f, 2.f}, {O}));
  bn.bias().value().copy_from(Tensor::from_vector({0.1f, 0.2f, 0.5f, -0.5f, 0.f}, {O}));
  const Tensor bias = Tensor::from_vector({0.25f, -0.5f, 1.f, 1.f, 0.f}, {O});
  const Tensor t = infer::sign_thresholds_of(w, bias, &bn, Device::CPU);
  REQUIRE(t.shape() == Shape({2, O}));
  const int32_t* dmin = t.data<int32_t>();
  const int32_t* flip = dmin + O;
  for (int64_t d = -range; d <= range; ++d) {
    Tensor v = Tensor::empty({1, O});
    for (int64_t o = 0; o < O; ++o) v.data<float>()[o] = static_cast<float>(d) + bias.data<float>()[o];
    Tensor mean = bn.running_mean(), var = bn.running_var();
    const Tensor y = ops::batch_norm_forward(v, bn.weight().value(), bn.bias().value(), mean, var, false, 0.1f,
                                             bn.eps()).out;
    for (int64_t o = 0; o < O; ++o) {
      INFO("d " << d << " channel " << o << " BN " << y.data<float>()[o] << " dmin " << dmin[o] << " flip " << flip[o]);
      CHECK(((d >= dmin[o]) != (flip[o] != 0)) == (y.data<float>()[o] >= 0.f));
    }
  }
  CHECK(flip[0] == 0);  // upward
  CHECK(flip[1] == 1);  // downward
  CHECK(dmin[4] == 1);  // d = 1 gives BN exactly 0, which signs to +1
  // No BN: the sign of d + bias.
  const Tensor nb = infer::sign_thresholds_of(w, bias, nullptr, Device::CPU);
  CHECK(nb.data<int32_t>()[0] == 0);   // d + 0.25 >= 0 from d = 0
  CHECK(nb.data<int32_t>()[1] == 1);   // d - 0.5 >= 0 from d = 1
  CHECK(nb.data<int32_t>()[O] == 0);
}

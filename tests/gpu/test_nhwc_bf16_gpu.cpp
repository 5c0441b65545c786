// The NHWC inference helpers of kernels/nhwc_bf16.cu against their CPU references
// (kernels/nhwc_bf16.h) on random inputs, in both element types (bf16 and f32): channel counts
// that take the vector path (multiples of 8 / 4) and the scalar one (odd), odd spatial sizes,
// every optional operand on and off, outputs poisoned with NaN. The arithmetic is the same on
// both sides, so the tolerance is one bf16 ulp (rtol 2^-8) for bf16-rounded outputs, exact for
// the f32 affine, max pooling, the f32 residual add and the split into bf16 hi + lo (both sides
// round to nearest even from the same f32 values), and 1e-6 relative for f32 average pooling.
#include <algorithm>
#include <cmath>
#include <sstream>
#include <vector>

#include "engine/packed/bitpack.h"
#include "tests/support/testing.h"
#ifdef MDQ_HAS_CUDA
#include "kernels/nhwc_bf16.h"
#endif

using namespace mdq;

#ifdef MDQ_HAS_CUDA
namespace {

constexpr float kUlp = 1.f / 256.f;

Tensor random_bf16(const Shape& s, uint64_t seed, float lo = -2.f, float hi = 2.f) {
  return packed::to_bf16(testing::random_tensor(s, seed, lo, hi));  // CPU
}

// A CUDA output of the given shape and dtype filled with NaN, so unwritten elements fail.
Tensor poisoned(const Shape& s, DType dt) {
  Tensor t = Tensor::empty(s, DType::F32);
  testing::poison(t);
  return (dt == DType::BF16 ? packed::to_bf16(t) : t).cuda();
}

const uint16_t* host16(const Tensor& t) { return t.data<uint16_t>(); }
Tensor as_f32(const Tensor& t) { return t.dtype() == DType::BF16 ? packed::to_f32(t.cpu()) : t.cpu(); }

}  // namespace

TEST_CASE("affine_act_nhwc<float> matches the CPU exactly") {
  struct Case { int64_t P; int C; };
  for (Case k : {Case{7, 3}, Case{5, 64}, Case{33, 130}, Case{4, 6}, Case{1, 4}, Case{129, 512}}) {
    for (int variant = 0; variant < 8; ++variant) {
      const bool affine = variant & 1, res = variant & 2, relu = variant & 4;
      std::ostringstream what;
      what << "f32 P " << k.P << " C " << k.C << " scale/shift " << affine << " residual " << res << " relu " << relu;
      INFO(what.str());
      const uint64_t seed = 900 + k.P * 7 + k.C + variant;
      Tensor x = testing::random_tensor({k.P, k.C}, seed, -2.f, 2.f);
      Tensor r = testing::random_tensor({k.P, k.C}, seed + 1);
      Tensor scale = testing::random_tensor({k.C}, seed + 2, 0.1f, 2.f);
      Tensor shift = testing::random_tensor({k.C}, seed + 3);
      Tensor expected = Tensor::empty({k.P, k.C});
      kernels::reference::affine_act_nhwc<float>(x.data<float>(), affine ? scale.data<float>() : nullptr,
                                                 affine ? shift.data<float>() : nullptr,
                                                 res ? r.data<float>() : nullptr, relu, expected.data<float>(), k.P,
                                                 k.C);
      Tensor xg = x.cuda(), rg = r.cuda(), sg = scale.cuda(), hg = shift.cuda();
      Tensor y = poisoned({k.P, k.C}, DType::F32);
      kernels::affine_act_nhwc<float>(xg.data<float>(), affine ? sg.data<float>() : nullptr,
                                      affine ? hg.data<float>() : nullptr, res ? rg.data<float>() : nullptr, relu,
                                      y.data<float>(), k.P, k.C);
      testing::require_close(y.cpu(), expected, 0.f, 0.f, what.str());
    }
  }
}

TEST_CASE("affine_act_nhwc_bf16 matches the CPU") {
  struct Case { int64_t P; int C; };
  for (Case k : {Case{7, 3}, Case{5, 64}, Case{33, 130}, Case{4, 24}, Case{1, 8}, Case{129, 512}}) {
    for (int variant = 0; variant < 8; ++variant) {
      const bool affine = variant & 1, res = variant & 2, relu = variant & 4;
      std::ostringstream what;
      what << "P " << k.P << " C " << k.C << " scale/shift " << affine << " residual " << res << " relu " << relu;
      INFO(what.str());
      const uint64_t seed = 100 + k.P * 7 + k.C + variant;
      Tensor x = random_bf16({k.P, k.C}, seed), r = random_bf16({k.P, k.C}, seed + 1);
      Tensor scale = testing::random_tensor({k.C}, seed + 2, 0.1f, 2.f), shift = testing::random_tensor({k.C}, seed + 3);
      Tensor expected = Tensor::empty({k.P, k.C}, DType::BF16);
      kernels::reference::affine_act_nhwc_bf16(host16(x), affine ? scale.data<float>() : nullptr,
                                               affine ? shift.data<float>() : nullptr, res ? host16(r) : nullptr, relu,
                                               expected.data<uint16_t>(), k.P, k.C);
      Tensor xg = x.cuda(), rg = r.cuda(), sg = scale.cuda(), hg = shift.cuda();
      Tensor y = poisoned({k.P, k.C}, DType::BF16);
      kernels::affine_act_nhwc_bf16(xg.data<uint16_t>(), affine ? sg.data<float>() : nullptr,
                                    affine ? hg.data<float>() : nullptr, res ? rg.data<uint16_t>() : nullptr, relu,
                                    y.data<uint16_t>(), k.P, k.C);
      testing::require_close(as_f32(y), as_f32(expected), 0.f, kUlp, what.str());
    }
  }
}

TEST_CASE("residual_add_f32 matches the CPU exactly, with f32 and bf16 residuals") {
  for (int64_t n : {1, 7, 1000, 1001, 4096 * 3}) {
    for (bool r_bf16 : {false, true}) {
      std::ostringstream what;
      what << "n " << n << " residual " << (r_bf16 ? "bf16" : "f32");
      INFO(what.str());
      Tensor x = testing::random_tensor({n}, 300 + n), r32 = testing::random_tensor({n}, 301 + n);
      Tensor r16 = packed::to_bf16(r32);
      Tensor expected = Tensor::empty({n});
      kernels::reference::residual_add_f32(x.data<float>(), r_bf16 ? nullptr : r32.data<float>(),
                                           r_bf16 ? host16(r16) : nullptr, expected.data<float>(), n);
      Tensor xg = x.cuda(), r32g = r32.cuda(), r16g = r16.cuda(), y = poisoned({n}, DType::F32);
      kernels::residual_add_f32(xg.data<float>(), r_bf16 ? nullptr : r32g.data<float>(),
                                r_bf16 ? r16g.data<uint16_t>() : nullptr, y.data<float>(), n);
      testing::require_close(y.cpu(), expected, 0.f, 0.f, what.str());
    }
  }
}

TEST_CASE("maxpool_nhwc_bf16 3x3/2 (the ResNet stem) matches the CPU exactly, 8-channel vector path too") {
  struct Case { int N, H, W, C; };
  for (Case k : {Case{2, 7, 9, 3}, Case{1, 8, 8, 64}, Case{2, 14, 15, 16}, Case{1, 1, 1, 8}, Case{3, 2, 5, 5},
                 Case{2, 112, 112, 64}}) {
    std::ostringstream what;
    what << "N " << k.N << " H " << k.H << " W " << k.W << " C " << k.C;
    INFO(what.str());
    const int OH = ops::window_output_size(k.H, 3, 2, 1), OW = ops::window_output_size(k.W, 3, 2, 1);
    Tensor x = random_bf16({k.N, k.H, k.W, k.C}, 500 + k.H * 31 + k.C);
    Tensor expected = Tensor::empty({k.N, OH, OW, k.C}, DType::BF16);
    kernels::reference::maxpool_nhwc_bf16(host16(x), expected.data<uint16_t>(), k.N, k.H, k.W, k.C, 3, 2, 1);
    Tensor xg = x.cuda(), y = poisoned({k.N, OH, OW, k.C}, DType::BF16);
    kernels::maxpool_nhwc_bf16(xg.data<uint16_t>(), y.data<uint16_t>(), k.N, k.H, k.W, k.C, 3, 2, 1);
    testing::require_close(as_f32(y), as_f32(expected), 0.f, 0.f, what.str());

    // The f32 instantiation (split-bf16 runner), 4-channel vector path when C % 4 == 0.
    Tensor x32 = as_f32(x);
    Tensor expected32 = Tensor::empty({k.N, OH, OW, k.C});
    kernels::reference::maxpool_nhwc<float>(x32.data<float>(), expected32.data<float>(), k.N, k.H, k.W, k.C, 3, 2, 1);
    Tensor x32g = x32.cuda(), y32 = poisoned({k.N, OH, OW, k.C}, DType::F32);
    kernels::maxpool_nhwc<float>(x32g.data<float>(), y32.data<float>(), k.N, k.H, k.W, k.C, 3, 2, 1);
    testing::require_close(y32.cpu(), expected32, 0.f, 0.f, "f32 " + what.str());
  }
}

TEST_CASE("global average pooling f32 -> f32 matches the CPU") {
  struct Case { int N, HW, C; };
  for (Case k : {Case{2, 49, 512}, Case{3, 5, 3}, Case{1, 1, 7}, Case{4, 196, 256}}) {
    std::ostringstream what;
    what << "N " << k.N << " HW " << k.HW << " C " << k.C;
    INFO(what.str());
    Tensor x = testing::random_tensor({k.N, k.HW, k.C}, 800 + k.HW + k.C, -3.f, 3.f);
    Tensor expected = Tensor::empty({k.N, k.C});
    kernels::reference::avgpool_nhwc<float, float>(x.data<float>(), expected.data<float>(), k.N, k.HW, k.C);
    Tensor xg = x.cuda(), y = poisoned({k.N, k.C}, DType::F32);
    kernels::avgpool_nhwc<float, float>(xg.data<float>(), y.data<float>(), k.N, k.HW, k.C);
    testing::require_close(y.cpu(), expected, 1e-6f, 1e-6f, what.str());
  }
}

// Values spread over many binades (tiny, huge, exact in bf16, negative), so hi and lo both vary.
static Tensor spread_values(int64_t P, int C, uint64_t seed) {
  Tensor u = testing::random_tensor({P, C}, seed, -1.f, 1.f);
  Tensor e = testing::random_tensor({P, C}, seed + 1, -40.f, 40.f);
  float* pu = u.data<float>();
  const float* pe = e.data<float>();
  for (int64_t i = 0; i < u.numel(); ++i) {
    pu[i] = std::ldexp(pu[i], static_cast<int>(pe[i]));
    if (i % 7 == 3) pu[i] = bf16_to_float(float_to_bf16(pu[i]));  // lo = 0
  }
  return u;
}

TEST_CASE("split_bf16_nhwc matches the CPU exactly (hi = bf16(a), lo = bf16(a - hi))") {
  struct Case { int64_t P; int C; int x_offset; };
  // Vector path: C % 4 == 0 with aligned pointers; scalar path: odd C, C = 6, or x offset by one.
  for (Case k : {Case{7, 3, 0}, Case{5, 64, 0}, Case{33, 130, 0}, Case{4, 6, 0}, Case{1, 1, 0}, Case{129, 512, 0},
                 Case{1000, 5, 0}, Case{17, 8, 1}, Case{3, 4, 0}}) {
    std::ostringstream what;
    what << "P " << k.P << " C " << k.C << " x offset " << k.x_offset << " (element i of [P][2C] is p = i / 2C, "
         << "channel i % 2C: hi below C, lo from C)";
    INFO(what.str());
    Tensor x = spread_values(k.P, k.C, 1000 + k.P + k.C);
    Tensor expected = Tensor::empty({k.P, 2 * k.C}, DType::BF16);
    kernels::reference::split_bf16_nhwc(x.data<float>(), expected.data<uint16_t>(), k.P, k.C);
    // The input at an offset inside a bigger buffer (misaligned for the vector path when 1).
    std::vector<float> padded(static_cast<size_t>(x.numel() + k.x_offset), 0.f);
    std::copy(x.data<float>(), x.data<float>() + x.numel(), padded.begin() + k.x_offset);
    Tensor xg = Tensor::from_vector(padded, {static_cast<int64_t>(padded.size())}).cuda();
    Tensor y = poisoned({k.P, 2 * k.C}, DType::BF16);
    kernels::split_bf16_nhwc(xg.data<float>() + k.x_offset, y.data<uint16_t>(), k.P, k.C);
    testing::require_close(as_f32(y), as_f32(expected), 0.f, 0.f, what.str());
  }
}

TEST_CASE("global average pooling matches the CPU, bf16 and f32 inputs") {
  struct Case { int N, HW, C; };
  for (Case k : {Case{2, 49, 512}, Case{3, 5, 3}, Case{1, 1, 7}, Case{4, 196, 256}}) {
    for (bool f32_in : {false, true}) {
      std::ostringstream what;
      what << "N " << k.N << " HW " << k.HW << " C " << k.C << " input " << (f32_in ? "f32" : "bf16");
      INFO(what.str());
      Tensor x32 = testing::random_tensor({k.N, k.HW, k.C}, 700 + k.HW + k.C, -3.f, 3.f);
      Tensor x16 = packed::to_bf16(x32);
      Tensor expected = Tensor::empty({k.N, k.C}, DType::BF16);
      if (f32_in)
        kernels::reference::avgpool_nhwc_f32_to_bf16(x32.data<float>(), expected.data<uint16_t>(), k.N, k.HW, k.C);
      else
        kernels::reference::avgpool_nhwc_bf16(host16(x16), expected.data<uint16_t>(), k.N, k.HW, k.C);
      Tensor x32g = x32.cuda(), x16g = x16.cuda(), y = poisoned({k.N, k.C}, DType::BF16);
      if (f32_in)
        kernels::avgpool_nhwc_f32_to_bf16(x32g.data<float>(), y.data<uint16_t>(), k.N, k.HW, k.C);
      else
        kernels::avgpool_nhwc_bf16(x16g.data<uint16_t>(), y.data<uint16_t>(), k.N, k.HW, k.C);
      testing::require_close(as_f32(y), as_f32(expected), 1e-6f, kUlp, what.str());
    }
  }
}
#endif  // MDQ_HAS_CUDA

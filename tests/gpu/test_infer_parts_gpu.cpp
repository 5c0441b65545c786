// The parts of an inference plan (engine/infer/lower.h) on CUDA against their CPU paths: the
// layout and pooling kernels (kernels/nhwc_bf16.cu, with the bf16 convolutions' channel padding,
// subsampling and im2col) exactly, on odd sizes with poisoned outputs, and the tensor calls a
// plan makes of them (engine/packed/nhwc.h); the packed max pool and NCHW unpack of bits
// (kernels/binary_act.cu) exactly; the sign thresholds against the float engine's CUDA BatchNorm
// on every d. CPU twins: tests/cpu/test_infer_parts.cpp.
#include <cmath>
#include <sstream>
#include <tuple>
#include <vector>

#include "engine/infer/fold.h"
#include "engine/ops/batchnorm.h"
#include "engine/ops/pooling.h"
#include "engine/packed/binary_act.h"
#include "engine/packed/bitpack.h"
#include "engine/packed/nhwc.h"
#include "tests/support/testing.h"
#ifdef MDQ_HAS_CUDA
#include "kernels/nhwc_bf16.h"
#endif

using namespace mdq;

#ifdef MDQ_HAS_CUDA
namespace {

Tensor poisoned(const Shape& s, DType dt) {
  Tensor t = Tensor::empty(s, DType::F32);
  testing::poison(t);
  return (dt == DType::BF16 ? packed::to_bf16(t) : t).cuda();
}
Tensor as_f32(const Tensor& t) { return t.dtype() == DType::BF16 ? packed::to_f32(t.cpu()) : t.cpu(); }

}  // namespace

TEST_CASE("the layout changes (nchw_f32_to_nhwc, nhwc_to_nchw, nhwc_bf16_to_nchw_f32 and its add) match the CPU exactly") {
  // Odd sizes put partial tiles on both edges of the tiled transpose; a side of at most 16 (an
  // image's 3 channels, a conv weight's 9 or 1 taps, 16 and 17 at the switch) takes the
  // short-side kernel in both directions.
  for (auto [N, C, HW] : {std::tuple<int64_t, int, int64_t>{1, 1, 1}, {2, 3, 35}, {3, 64, 49}, {5, 7, 1025},
                          {2, 65, 33}, {1, 130, 4097}, {16, 96, 9}, {8, 20, 1}, {3, 17, 16}, {2, 16, 17}}) {
    std::ostringstream what;
    what << "N " << N << " C " << C << " HW " << HW;
    INFO(what.str());
    Tensor x = testing::random_tensor({N, C, HW}, 40 + N + C + HW, -3.f, 3.f);
    Tensor want = Tensor::empty({N, HW, C}, DType::BF16);
    kernels::reference::nchw_f32_to_nhwc_bf16(x.data<float>(), want.data<uint16_t>(), N, C, HW);
    Tensor xg = x.cuda(), y = poisoned({N, HW, C}, DType::BF16);
    kernels::nchw_f32_to_nhwc_bf16(xg.data<float>(), y.data<uint16_t>(), N, C, HW);
    testing::require_close(as_f32(y), as_f32(want), 0.f, 0.f, "to NHWC bf16 " + what.str());

    Tensor back_want = Tensor::empty({N, C, HW}, DType::BF16);
    kernels::reference::nhwc_to_nchw_bf16(want.data<uint16_t>(), back_want.data<uint16_t>(), N, HW, C);
    Tensor back = poisoned({N, C, HW}, DType::BF16);
    kernels::nhwc_to_nchw_bf16(y.data<uint16_t>(), back.data<uint16_t>(), N, HW, C);
    testing::require_close(as_f32(back), as_f32(back_want), 0.f, 0.f, "to NCHW " + what.str());

    // bf16 NHWC back to f32 NCHW (the bf16 convolutions' output pass): every bf16 is an f32.
    Tensor widened_want = Tensor::empty({N, C, HW});
    kernels::reference::nhwc_bf16_to_nchw_f32(want.data<uint16_t>(), widened_want.data<float>(), N, HW, C);
    Tensor widened = poisoned({N, C, HW}, DType::F32);
    kernels::nhwc_bf16_to_nchw_f32(y.data<uint16_t>(), widened.data<float>(), N, HW, C);
    testing::require_close(widened.cpu(), widened_want, 0.f, 0.f, "bf16 NHWC to f32 NCHW " + what.str());
    // The same added into an f32 NCHW tensor (a conv's input gradient summed into x's).
    Tensor sum_want = testing::random_tensor({N, C, HW}, 90 + N + C + HW, -3.f, 3.f);
    Tensor sum = sum_want.cuda();
    kernels::reference::nhwc_bf16_add_to_nchw_f32(want.data<uint16_t>(), sum_want.data<float>(), N, HW, C);
    kernels::nhwc_bf16_add_to_nchw_f32(y.data<uint16_t>(), sum.data<float>(), N, HW, C);
    testing::require_close(sum.cpu(), sum_want, 0.f, 0.f, "bf16 NHWC added to f32 NCHW " + what.str());

    // The f32 instantiations (split-bf16 runner): plain copies.
    Tensor want32 = Tensor::empty({N, HW, C});
    kernels::reference::nchw_f32_to_nhwc<float>(x.data<float>(), want32.data<float>(), N, C, HW);
    Tensor y32 = poisoned({N, HW, C}, DType::F32);
    kernels::nchw_f32_to_nhwc<float>(xg.data<float>(), y32.data<float>(), N, C, HW);
    testing::require_close(y32.cpu(), want32, 0.f, 0.f, "to NHWC f32 " + what.str());
    Tensor back32 = poisoned({N, C, HW}, DType::F32);
    kernels::nhwc_to_nchw<float>(y32.data<float>(), back32.data<float>(), N, HW, C);
    testing::require_close(back32.cpu(), x, 0.f, 0.f, "to NCHW f32 " + what.str());
  }
}

TEST_CASE("nchw_f32_to_nhwc_bf16_padded (a stem's images, channels zero-padded) matches the CPU exactly") {
  // Cy % 8 == 0 on an aligned output takes the 16-byte-store kernel (8 channels a thread; 16 and
  // 24 put two or three threads on a pixel), other Cy and an output one element off alignment
  // the one-channel kernel; Cy == C pads nothing. Odd pixel counts and N > 1 check the indexing.
  struct Case {
    int64_t N;
    int C, Cy;
    int64_t HW;
    bool misaligned;
  };
  for (const Case& c : {Case{1, 1, 8, 1, false}, Case{2, 3, 8, 35, false}, Case{3, 3, 8, 12545, false},
                        Case{2, 3, 16, 33, false}, Case{1, 5, 24, 7, false}, Case{2, 8, 8, 17, false},
                        Case{2, 3, 5, 35, false}, Case{3, 3, 3, 9, false}, Case{2, 3, 8, 35, true},
                        Case{1, 9, 16, 3, true}}) {
    std::ostringstream what;
    what << "N " << c.N << " C " << c.C << " Cy " << c.Cy << " HW " << c.HW << (c.misaligned ? " misaligned" : "");
    INFO(what.str());
    const int64_t n = c.N * c.HW * c.Cy, off = c.misaligned ? 1 : 0;
    Tensor x = testing::random_tensor({c.N, c.C, c.HW}, 60 + c.N + c.C + c.Cy + c.HW, -3.f, 3.f);
    Tensor want = Tensor::empty({n}, DType::BF16);
    kernels::reference::nchw_f32_to_nhwc_bf16_padded(x.data<float>(), want.data<uint16_t>(), c.N, c.C, c.Cy, c.HW);
    Tensor xg = x.cuda(), y = poisoned({n + 2}, DType::BF16);  // poisoned, one element on either side spare
    kernels::nchw_f32_to_nhwc_bf16_padded(xg.data<float>(), y.data<uint16_t>() + off, c.N, c.C, c.Cy, c.HW);
    const std::vector<float> got = as_f32(y).to_vector(), ref = as_f32(want).to_vector();
    int64_t differ = 0;
    for (int64_t i = 0; i < n; ++i) differ += !(got[static_cast<size_t>(i + off)] == ref[static_cast<size_t>(i)]);
    CHECK(differ == 0);
    CHECK(std::isnan(got[static_cast<size_t>(n + off)]));  // nothing written past the end
    if (off) CHECK(std::isnan(got[0]));                     // nor before the start
  }
  // The tensor call a plan makes (Bf16Stem), CUDA vs CPU.
  const Tensor x = testing::random_tensor({3, 3, 13, 11}, 77, -3.f, 3.f);
  testing::require_close(as_f32(packed::to_nhwc_bf16_padded(x.cuda(), 8)), as_f32(packed::to_nhwc_bf16_padded(x, 8)),
                         0.f, 0.f, "to_nhwc_bf16_padded");
}

TEST_CASE("copy_channels_bf16 pads with zeros and cuts channels as the CPU does") {
  for (auto [P, cx, cy] : {std::tuple<int64_t, int, int>{1, 3, 8}, {1000, 3, 8}, {37, 8, 3}, {64, 5, 5}, {9, 12, 16}}) {
    std::ostringstream what;
    what << "P " << P << " cx " << cx << " cy " << cy;
    INFO(what.str());
    Tensor x = packed::to_bf16(testing::random_tensor({P, cx}, 70 + P + cx, -3.f, 3.f));
    Tensor want = Tensor::empty({P, cy}, DType::BF16);
    kernels::reference::copy_channels_bf16(x.data<uint16_t>(), cx, want.data<uint16_t>(), cy, P);
    Tensor xg = x.cuda(), y = poisoned({P, cy}, DType::BF16);
    kernels::copy_channels_bf16(xg.data<uint16_t>(), cx, y.data<uint16_t>(), cy, P);
    testing::require_close(as_f32(y), as_f32(want), 0.f, 0.f, what.str());
  }
}

TEST_CASE("subsample_nhwc_bf16 and its adjoint upsample_zero_nhwc_bf16 match the CPU exactly") {
  struct Case { int64_t N; int H, W, C, s; };
  for (Case c : {Case{2, 32, 32, 64, 2}, Case{3, 7, 9, 16, 2}, Case{1, 5, 5, 3, 3}, Case{2, 8, 6, 20, 4},
                 Case{1, 1, 1, 8, 2}}) {
    std::ostringstream what;
    what << "N " << c.N << " H " << c.H << " W " << c.W << " C " << c.C << " s " << c.s;
    INFO(what.str());
    const int OH = (c.H + c.s - 1) / c.s, OW = (c.W + c.s - 1) / c.s;
    Tensor x = packed::to_bf16(testing::random_tensor({c.N, c.H, c.W, c.C}, 80 + c.H + c.C, -3.f, 3.f));
    Tensor want = Tensor::empty({c.N, OH, OW, c.C}, DType::BF16);
    kernels::reference::subsample_nhwc_bf16(x.data<uint16_t>(), want.data<uint16_t>(), c.N, c.H, c.W, c.C, c.s);
    Tensor xg = x.cuda(), y = poisoned({c.N, OH, OW, c.C}, DType::BF16);
    kernels::subsample_nhwc_bf16(xg.data<uint16_t>(), y.data<uint16_t>(), c.N, c.H, c.W, c.C, c.s);
    testing::require_close(as_f32(y), as_f32(want), 0.f, 0.f, "subsample " + what.str());

    Tensor up_want = Tensor::empty({c.N, c.H, c.W, c.C}, DType::BF16);
    kernels::reference::upsample_zero_nhwc_bf16(want.data<uint16_t>(), up_want.data<uint16_t>(), c.N, c.H, c.W, c.C,
                                                c.s);
    Tensor up = poisoned({c.N, c.H, c.W, c.C}, DType::BF16);
    kernels::upsample_zero_nhwc_bf16(y.data<uint16_t>(), up.data<uint16_t>(), c.N, c.H, c.W, c.C, c.s);
    testing::require_close(as_f32(up), as_f32(up_want), 0.f, 0.f, "upsample_zero " + what.str());
  }
}

TEST_CASE("im2col_nhwc_bf16 matches the CPU exactly: windows in the weight's order, zeros in padding and past K") {
  // ld a multiple of 8 takes the 16-byte-store path, others the scalar one. The CIFAR and
  // ImageNet stems (3 channels, 3x3/1 and 7x7/2), odd maps, stride 2 and 3, a non-square window,
  // a 1x1 window, a window as tall as the padded map, rows padded past C*KH*KW or not.
  struct Case { int64_t N; int H, W, C, KH, KW, s, p, ld; };
  for (Case c : {Case{2, 32, 32, 3, 3, 3, 1, 1, 32}, Case{3, 7, 9, 3, 3, 3, 2, 1, 32},
                 Case{2, 15, 15, 3, 7, 7, 2, 3, 152}, Case{1, 5, 6, 5, 5, 5, 2, 2, 128},
                 Case{2, 6, 5, 3, 3, 2, 1, 0, 18}, Case{1, 9, 8, 12, 1, 1, 3, 0, 16},
                 Case{1, 3, 3, 3, 3, 3, 1, 1, 27}, Case{1, 1, 1, 3, 3, 3, 1, 1, 32},
                 Case{2, 3, 9, 2, 5, 3, 2, 1, 40}}) {
    std::ostringstream what;
    what << "N " << c.N << " H " << c.H << " W " << c.W << " C " << c.C << " window " << c.KH << "x" << c.KW << " s "
         << c.s << " p " << c.p << " ld " << c.ld;
    INFO(what.str());
    const int OH = ops::window_output_size(c.H, c.KH, c.s, c.p), OW = ops::window_output_size(c.W, c.KW, c.s, c.p);
    Tensor x = packed::to_bf16(testing::random_tensor({c.N, c.H, c.W, c.C}, 110 + c.H + c.C + c.KH, -3.f, 3.f));
    Tensor want = Tensor::empty({c.N * OH * OW, c.ld}, DType::BF16);
    kernels::reference::im2col_nhwc_bf16(x.data<uint16_t>(), want.data<uint16_t>(), c.N, c.H, c.W, c.C, c.KH, c.KW, c.s,
                                         c.p, c.ld);
    Tensor xg = x.cuda(), cols = poisoned({c.N * OH * OW, c.ld}, DType::BF16);
    kernels::im2col_nhwc_bf16(xg.data<uint16_t>(), cols.data<uint16_t>(), c.N, c.H, c.W, c.C, c.KH, c.KW, c.s, c.p,
                              c.ld);
    testing::require_close(as_f32(cols), as_f32(want), 0.f, 0.f, what.str());
  }
}

TEST_CASE("maxpool_nhwc_bf16 matches the CPU exactly") {
  struct Case { int N, H, W, C, k, s, p; };
  for (Case c : {Case{2, 28, 28, 16, 2, 2, 0}, Case{1, 7, 7, 64, 2, 2, 0}, Case{3, 9, 6, 5, 3, 2, 1},
                 Case{1, 1, 1, 3, 1, 1, 0}, Case{2, 15, 17, 33, 3, 1, 1}}) {
    std::ostringstream what;
    what << "N " << c.N << " H " << c.H << " W " << c.W << " C " << c.C << " k " << c.k << " s " << c.s << " p " << c.p;
    INFO(what.str());
    Tensor x = packed::to_bf16(testing::random_tensor({c.N, c.H, c.W, c.C}, 60 + c.H + c.C));
    const int OH = ops::window_output_size(c.H, c.k, c.s, c.p), OW = ops::window_output_size(c.W, c.k, c.s, c.p);
    Tensor want = Tensor::empty({c.N, OH, OW, c.C}, DType::BF16);
    kernels::reference::maxpool_nhwc_bf16(x.data<uint16_t>(), want.data<uint16_t>(), c.N, c.H, c.W, c.C, c.k, c.s, c.p);
    Tensor xg = x.cuda(), y = poisoned({c.N, OH, OW, c.C}, DType::BF16);
    kernels::maxpool_nhwc_bf16(xg.data<uint16_t>(), y.data<uint16_t>(), c.N, c.H, c.W, c.C, c.k, c.s, c.p);
    testing::require_close(as_f32(y), as_f32(want), 0.f, 0.f, what.str());
  }
}

TEST_CASE("packed NHWC passes on CUDA equal their CPU path, in f32 and bf16") {
  // Odd channel counts (the scalar path) and multiples of 8 (the vector path), odd map sizes.
  for (auto [N, C, H, W] : {std::tuple<int64_t, int64_t, int64_t, int64_t>{2, 5, 7, 6}, {3, 64, 9, 9}, {1, 33, 1, 1}}) {
    std::ostringstream what;
    what << "N " << N << " C " << C << " H " << H << " W " << W;
    INFO(what.str());
    const Tensor x = testing::random_tensor({N, C, H, W}, 90 + C, -3.f, 3.f);
    const Tensor r = testing::random_tensor({N, C, H, W}, 91 + C, -3.f, 3.f);
    for (DType dt : {DType::F32, DType::BF16}) {
      INFO(dtype_name(dt));
      const Tensor xh = packed::to_nhwc(x, dt), rh = packed::to_nhwc(r, dt);
      const Tensor xg = packed::to_nhwc(x.cuda(), dt), rg = packed::to_nhwc(r.cuda(), dt);
      REQUIRE(xg.is_cuda());
      testing::require_close(as_f32(xg), as_f32(xh), 0.f, 0.f, "to_nhwc");
      testing::require_close(as_f32(packed::to_nchw(xg)), as_f32(packed::to_nchw(xh)), 0.f, 0.f, "to_nchw");
      testing::require_close(as_f32(packed::add_nhwc(xg, rg, true)), as_f32(packed::add_nhwc(xh, rh, true)), 0.f, 0.f,
                             "add_nhwc");
      {  // the folded BN + ReLU of Bf16Stem, one scale and shift per channel
        const Tensor scale = testing::random_tensor({xh.dim(-1)}, 81, -2.f, 2.f);
        const Tensor shift = testing::random_tensor({xh.dim(-1)}, 82, -1.f, 1.f);
        for (bool relu : {false, true})
          testing::require_close(as_f32(packed::affine_nhwc(xg, scale.cuda(), shift.cuda(), relu)),
                                 as_f32(packed::affine_nhwc(xh, scale, shift, relu)), 0.f, 0.f, "affine_nhwc");
      }
      if (H >= 3)
        testing::require_close(as_f32(packed::max_pool_nhwc(xg, 3, 2, 1)), as_f32(packed::max_pool_nhwc(xh, 3, 2, 1)),
                               0.f, 0.f, "max_pool_nhwc");
      // Pixel-order f32 sums on both sides; the GPU may reassociate: 1e-6 relative, one bf16 ulp.
      const float tol = dt == DType::BF16 ? 1.f / 256.f : 1e-6f;
      testing::require_close(as_f32(packed::global_avg_pool_nhwc(xg)), as_f32(packed::global_avg_pool_nhwc(xh)), tol,
                             tol, "global_avg_pool_nhwc");
    }
    const Tensor x32 = packed::to_nhwc(x, DType::F32);
    testing::require_close(as_f32(packed::split_bf16(x32.cuda())), as_f32(packed::split_bf16(x32)), 0.f, 0.f,
                           "split_bf16");
  }
}

TEST_CASE("max_pool2d_bits and unpack_signs_nchw on CUDA equal their CPU references") {
  for (auto [k, s, p] : {std::tuple<int, int, int>{2, 2, 0}, {3, 2, 1}, {3, 1, 1}, {1, 1, 0}}) {
    // Cw = 1, 1, 2, 2, 3, 4, 5, 8 words: the kernel's 1-word (odd Cw), 2-word and 4-word loads,
    // one or several vectors a pixel.
    for (int64_t C : {5, 32, 37, 64, 96, 128, 129, 256}) {
      const int64_t N = 3, H = 13, W = 11;
      INFO("k " << k << " s " << s << " p " << p << " C " << C << " input " << N << "x" << H << "x" << W);
      const Tensor bits = packed::pack_signs_nchw(testing::random_tensor({N, C, H, W}, 5 + C + k + s));
      const Tensor want = packed::max_pool2d_bits(bits, k, s, p);
      const Tensor got = packed::max_pool2d_bits(bits.cuda(), k, s, p);
      REQUIRE(got.is_cuda());
      REQUIRE(got.shape() == want.shape());
      // u32 words compared as raw bits (to_vector_i32 wants an i32 tensor).
      auto words = [](const Tensor& t) {
        const Tensor c = t.cpu();
        const uint32_t* w = static_cast<const uint32_t*>(c.raw());
        return std::vector<uint32_t>(w, w + c.numel());
      };
      const std::vector<uint32_t> gv = words(got), wv = words(want);
      int64_t bad = 0, first = -1;
      for (size_t i = 0; i < gv.size(); ++i)
        if (gv[i] != wv[i] && bad++ == 0) first = static_cast<int64_t>(i);
      INFO("max_pool2d_bits: " << bad << " words differ, first at flat index " << first << " of " << want.describe());
      CHECK(bad == 0);
      testing::require_close(packed::unpack_signs_nchw(bits.cuda(), C).cpu(), packed::unpack_signs_nchw(bits, C), 0.f,
                             0.f, "unpack_signs_nchw");
    }
  }
}

// The CUDA path divides in f32 as the CUDA global average pool does, the CPU one in double as
// its loop does: each equals its own device's float pool of the unpacked values.
TEST_CASE("global_avg_pool_bits on CUDA equals the CUDA global average pool of the unpacked ±1 values") {
  for (auto [H, W] : {std::pair<int64_t, int64_t>{1, 1}, {7, 7}, {13, 11}})
    for (int64_t C : {5, 37, 64, 512}) {
      INFO(H << "x" << W << " C " << C);
      const Tensor bits = packed::pack_signs_nchw(testing::random_tensor({3, C, H, W}, 7 + C + H)).cuda();
      const Tensor got = packed::global_avg_pool_bits(bits, C);
      REQUIRE(got.is_cuda());
      CHECK(testing::bits(got) == testing::bits(ops::global_avg_pool_forward(packed::unpack_signs_nchw(bits, C))));
    }
}

TEST_CASE("sign_thresholds_of on CUDA follows the float engine's CUDA BatchNorm on every d") {
  const int64_t O = 40, C = 37;  // 3x3: |d| <= 333
  packed::PackedWeights w = packed::pack_binary_weights(testing::random_signs({O, C, 3, 3}, 1));
  nn::BatchNorm2d bn(O, /*affine=*/true);
  bn.running_mean().copy_from(testing::random_tensor({O}, 2, -20.f, 20.f));
  bn.running_var().copy_from(testing::random_tensor({O}, 3, 10.f, 300.f));
  bn.weight().value().copy_from(testing::random_tensor({O}, 4, -2.f, 2.f));
  bn.bias().value().copy_from(testing::random_tensor({O}, 5, -1.f, 1.f));
  const Tensor bias = testing::random_tensor({O}, 6);
  bn.to(Device::CUDA);
  const Tensor t = infer::sign_thresholds_of(w, bias, &bn, Device::CUDA);
  REQUIRE(t.is_cuda());
  const std::vector<int32_t> tv = t.to_vector_i32();
  const int64_t range = 9 * C, R = 2 * range + 1;
  Tensor v = Tensor::empty({R, O});  // [N][C]: row j holds d = j - range for every channel
  for (int64_t j = 0; j < R; ++j)
    for (int64_t o = 0; o < O; ++o) v.data<float>()[j * O + o] = static_cast<float>(j - range) + bias.data<float>()[o];
  Tensor mean = bn.running_mean(), var = bn.running_var();
  const std::vector<float> y =
      ops::batch_norm_forward(v.cuda(), bn.weight().value(), bn.bias().value(), mean, var, false, 0.1f, bn.eps())
          .out.to_vector();
  int64_t bad = 0;
  for (int64_t j = 0; j < R; ++j)
    for (int64_t o = 0; o < O; ++o) {
      const bool want = y[j * O + o] >= 0.f, got = (j - range >= tv[o]) != (tv[O + o] != 0);
      if (want != got && bad++ < 5)
        UNSCOPED_INFO("d " << j - range << " channel " << o << ": BN " << y[j * O + o] << ", dmin " << tv[o]
                           << " flip " << tv[O + o]);
    }
  CHECK(bad == 0);
}

#else
TEST_CASE("inference plan part GPU tests need a CUDA build") { SUCCEED("not a CUDA build"); }
#endif

// Packing kernels and packed convolutions (W1A1 on the b1 tensor cores, W1A16/W2A16 on bf16
// MMA) against the CPU references. W1A1 must match exactly (int32); failures print the first
// mismatching (n, oh, ow, o) and the shape, which points straight at a fragment-layout error.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <iterator>
#include <vector>

#include "common/scoped_env.h"
#include "engine/device.h"
#include "engine/packed/bitpack.h"
#include "engine/packed/packed_conv.h"
#include "tests/support/conv_case.h"
#include "tests/support/testing.h"
#include "tests/support/w1a16_case.h"

using namespace mdq;
using namespace mdq::packed;

namespace {

using testing::random_signs;
using testing::random_ternary;
using testing::words;

// Exact comparison of two [N][OH][OW][Olast] 32-bit tensors; names the first mismatch.
void require_equal_nhwc(const Tensor& got, const Tensor& expected, const std::string& what) {
  REQUIRE(got.shape() == expected.shape());
  std::vector<uint32_t> g = words(got), e = words(expected);
  const int64_t OH = got.dim(1), OW = got.dim(2), O = got.dim(3);
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < g.size(); ++i)
    if (g[i] != e[i]) {
      ++bad;
      if (first < 0) first = static_cast<int64_t>(i);
    }
  if (bad) {
    const int64_t o = first % O, ow = (first / O) % OW, oh = (first / O / OW) % OH, n = first / O / OW / OH;
    FAIL(what << ": " << bad << " of " << g.size() << " differ; first at (n " << n << ", oh " << oh << ", ow " << ow
              << ", o " << o << "): got " << static_cast<int32_t>(g[first]) << ", expected "
              << static_cast<int32_t>(e[first]));
  }
}

// An i16 tensor (any device) as i32 on the host, for require_equal_nhwc.
Tensor widened(const Tensor& i16) {
  const std::vector<int16_t> v = testing::int16s(i16);
  Tensor r = Tensor::empty(i16.shape(), DType::I32);
  std::copy(v.begin(), v.end(), r.data<int32_t>());
  return r;
}

using Case = testing::ConvCase;
using testing::describe;

// Channels 3/33/130/257 (not multiples of 32/128/256), 64/256 (vector loads), odd sizes, stride
// 1 and 2, padding 0 and 1, O across both tile shapes (<= 64 and > 64, partial tiles).
const Case kCases[] = {
    {1, 3, 7, 7, 5, 3, 1, 1},     {2, 33, 9, 9, 8, 3, 2, 1},     {1, 130, 7, 9, 33, 3, 1, 0},
    {3, 257, 9, 7, 70, 3, 2, 0},  {2, 64, 16, 16, 64, 3, 1, 1},  {4, 128, 9, 9, 130, 3, 1, 1},
    {2, 256, 8, 8, 256, 3, 1, 1}, {1, 33, 7, 7, 3, 1, 1, 0},     {2, 512, 7, 7, 96, 3, 2, 1},
    {5, 64, 11, 13, 200, 3, 2, 1}, {1, 96, 9, 9, 40, 5, 1, 2},   {8, 64, 17, 17, 64, 3, 1, 1},
    // 1x1 stride-2 shortcut; K = 9 x 32 words > one staged weight chunk (256 words); many CTAs.
    {2, 64, 9, 9, 128, 1, 2, 0},  {1, 1000, 5, 5, 70, 3, 1, 1},  {3, 64, 40, 41, 64, 3, 1, 1},
};

// W1A1 only, on top of kCases: more 64-row tiles than a persistent grid has CTAs, so each CTA
// walks several tiles (the wgmma kernel's double-buffered gather), and a 128-channel layer.
const Case kW1A1ManyTiles[] = {{8, 64, 96, 96, 64, 3, 1, 1}, {16, 128, 28, 28, 128, 3, 1, 1}};

// W1A16 only, on top of kCases: the mma.sync fast path's CTA shapes are chosen by size, so these
// are big enough (for up to 132 SMs) to reach the 256x64 (O <= 64) and 128x128 (O > 64) tiles,
// with partial row and column tiles, C = 32 and 40 (a 64-channel block past C), stride 2 and 1x1
// taps; for the wgmma kernel, both tile widths (O <= 64, > 64) with partial pixel and channel
// tiles, O not a multiple of 8 (its element-wise output) and 576 pixel tiles.
const Case kW1A16Cases[] = {
    {4, 32, 95, 95, 40, 3, 1, 1},   {3, 64, 56, 56, 200, 3, 1, 1}, {16, 40, 57, 57, 130, 3, 2, 1},
    {2, 64, 9, 9, 96, 1, 1, 0},     {3, 128, 14, 14, 256, 1, 2, 0}, {1, 40, 6, 6, 8, 3, 1, 1},
    {4, 128, 9, 9, 130, 3, 1, 1},   {8, 64, 96, 96, 64, 3, 1, 1},  {2, 72, 7, 9, 37, 3, 1, 1},
};

// Runs a W1A1 test on each kernel, through kernels/binary_conv_wgmma.cu's MDQ_W1A1_KERNEL and
// MDQ_W1A1_WARPGROUPS switches, set for the lifetime of the returned object (the test case's run),
// then put back: "auto" (on sm_90a builds on a compute capability 9.0 GPU, for every shape whose K
// fits shared memory, the warp-specialised wgmma kernel where it takes the layer, else the
// one-role wgmma kernel, two warpgroups a CTA where a 3x3 layer has more than 64 channels and they
// fit; else mma.sync), "auto 1wg" (the same with one warpgroup a CTA everywhere), "ws" (the
// warp-specialised kernel wherever it can run; the modes it does not take as "auto"), "ws async"
// (the same with MDQ_W1A1_WS_PUBLISH=async: tiles published by an arrival their copies complete),
// "wgmma" and "wgmma 1wg" (the one-role kernel), and "mma" (mma.sync, the portable path).
struct KernelChoice {
  std::string label;
  bool mma_sync;  // the portable kernel
  ScopedEnv kernel, warpgroups, publish;
};
KernelChoice use_each_w1a1_kernel() {
  const std::string kernel =
      GENERATE(as<std::string>{}, "auto", "auto 1wg", "ws", "ws async", "wgmma", "wgmma 1wg", "mma");
  const std::string name = kernel.substr(0, kernel.find(' '));
  return {"W1A1 kernel " + kernel + ": ", name == "mma", {"MDQ_W1A1_KERNEL", name.c_str()},
          {"MDQ_W1A1_WARPGROUPS", kernel.find("1wg") != std::string::npos ? "1" : "auto"},
          {"MDQ_W1A1_WS_PUBLISH", kernel.find("async") != std::string::npos ? "async" : "wait"}};
}

// Whether the sm_90a W1A1 kernel runs here: built for it, on a compute capability 9.0 GPU.
bool wgmma_runs() {
#ifdef MDQ_HAS_SM90A
  return cuda_device_name().find("(sm_90)") != std::string::npos;
#else
  return false;
#endif
}

}  // namespace

TEST_CASE("packing kernels match the CPU exactly") {
  for (int64_t C : {1, 3, 32, 33, 130, 257}) {
    INFO("C " << C);
    Tensor x = testing::random_tensor({3, 5, C}, 10 + C);
    REQUIRE(words(pack_signs(x.cuda())) == words(pack_signs(x)));
    REQUIRE(words(pack_signs(to_bf16(x).cuda())) == words(pack_signs(x)));
    Tensor nchw = testing::random_tensor({2, C, 3, 5}, 20 + C);
    REQUIRE(words(pack_signs_nchw(nchw.cuda())) == words(pack_signs_nchw(nchw)));
    Tensor bits = pack_signs(x);
    REQUIRE(unpack_signs(bits.cuda(), C).to_vector() == unpack_signs(bits, C).to_vector());
    Tensor t = random_ternary({4, C}, 30 + C);
    TernaryPlanes g = pack_ternary(t.cuda()), h = pack_ternary(t);
    REQUIRE(words(g.sign) == words(h.sign));
    REQUIRE(words(g.nonzero) == words(h.nonzero));
  }
  Tensor x = testing::random_tensor({4097}, 5, -50, 50);
  REQUIRE(words(to_bf16(x.cuda())) == words(to_bf16(x)));
  REQUIRE(to_f32(to_bf16(x).cuda()).to_vector() == to_f32(to_bf16(x)).to_vector());
}

TEST_CASE("W1A1 convolution on the b1 tensor cores equals the CPU reference exactly") {
  const KernelChoice kernel = use_each_w1a1_kernel();
  INFO(kernel.label);
  std::vector<Case> cases(std::begin(kCases), std::end(kCases));
  cases.insert(cases.end(), std::begin(kW1A1ManyTiles), std::end(kW1A1ManyTiles));
  for (const Case& c : cases) {
    INFO(describe(c));
    Tensor x = random_signs({c.N, c.H, c.W, c.C}, 7 * c.C + c.H);
    PackedWeights w = pack_binary_weights(random_signs({c.O, c.C, c.K, c.K}, 11 * c.C + c.O));
    Tensor xb = pack_signs(x);
    ConvGeometry g{c.stride, c.pad};
    Tensor expected = binary_conv2d(xb, w, g);
    Tensor got = binary_conv2d(xb.cuda(), w.to(Device::CUDA), g);
    require_equal_nhwc(got, expected, "W1A1 int32 " + describe(c));
    Tensor got16 = binary_conv2d(xb.cuda(), w.to(Device::CUDA), g, {BinaryOutputMode::Int16});
    REQUIRE(got16.dtype() == DType::I16);
    require_equal_nhwc(widened(got16), expected, "W1A1 int16 " + describe(c));
  }
}

TEST_CASE("W1A1 linear on the GPU equals the CPU") {
  const KernelChoice kernel = use_each_w1a1_kernel();
  INFO(kernel.label);
  for (int64_t C : {3, 130, 257, 512}) {
    Tensor x = pack_signs(random_signs({37, C}, 40 + C));
    PackedWeights w = pack_binary_weights(random_signs({70, C}, 50 + C));
    Tensor e = binary_linear(x, w), got = binary_linear(x.cuda(), w.to(Device::CUDA));
    require_equal_nhwc(got.reshape({37, 1, 1, 70}), e.reshape({37, 1, 1, 70}), "W1A1 linear C " + std::to_string(C));
  }
}

TEST_CASE("W1A1 epilogues on the GPU: affine, ReLU, sign + re-pack") {
  const KernelChoice kernel = use_each_w1a1_kernel();
  INFO(kernel.label);
  for (const Case& c : {Case{2, 33, 9, 9, 37, 3, 1, 1}, Case{2, 128, 9, 9, 130, 3, 2, 1}, Case{1, 64, 8, 8, 64, 3, 1, 1},
                        kW1A1ManyTiles[0]}) {
    INFO(describe(c));
    Tensor xb = pack_signs(random_signs({c.N, c.H, c.W, c.C}, 60 + c.C));
    PackedWeights w = pack_binary_weights(random_signs({c.O, c.C, c.K, c.K}, 70 + c.C));
    Tensor scale = testing::random_tensor({c.O}, 80, 0.5f, 2.f), shift = testing::random_tensor({c.O}, 81, -3.f, 3.f);
    ConvGeometry g{c.stride, c.pad};
    PackedWeights wg = w.to(Device::CUDA);
    Tensor xg = xb.cuda();
    for (BinaryOutputMode mode : {BinaryOutputMode::Affine, BinaryOutputMode::AffineRelu}) {
      Tensor e = binary_conv2d(xb, w, g, {mode, scale, shift});
      Tensor got = binary_conv2d(xg, wg, g, {mode, scale.cuda(), shift.cuda()});
      // 1e-3 absolute: the GPU may fuse scale d + shift into one FMA, the CPU rounds twice.
      testing::require_close(got, e, 1e-3f, 1e-6f, "affine epilogue " + describe(c));
    }
    // scale d + shift is never within float rounding of 0 here (|shift| not an integer
    // multiple of scale in general), so the packed signs must agree exactly.
    Tensor e = binary_conv2d(xb, w, g, {BinaryOutputMode::SignPack, scale, shift});
    Tensor got = binary_conv2d(xg, wg, g, {BinaryOutputMode::SignPack, scale.cuda(), shift.cuda()});
    require_equal_nhwc(got, e, "sign + re-pack " + describe(c));
  }
}

TEST_CASE("W1A1 sign + re-pack with negative, zero and precomputed thresholds") {
  const KernelChoice kernel = use_each_w1a1_kernel();
  INFO(kernel.label);
  // C 2000: K = 18000 bits, past the two-channels-a-word sign epilogue's range (kPairedSignsMaxK).
  for (const Case& c : {Case{2, 64, 9, 9, 96, 3, 1, 1}, Case{1, 1000, 5, 5, 70, 3, 1, 1}, Case{1, 2000, 4, 4, 40, 3, 1, 1}}) {
    INFO(describe(c));
    Tensor xb = pack_signs(random_signs({c.N, c.H, c.W, c.C}, 90 + c.C));
    PackedWeights w = pack_binary_weights(random_signs({c.O, c.C, c.K, c.K}, 91 + c.C));
    // Scales of both signs and some exact zeros; shifts near d = 0 so both signs occur.
    Tensor scale = testing::random_tensor({c.O}, 92, -2.f, 2.f), shift = testing::random_tensor({c.O}, 93, -5.f, 5.f);
    for (int64_t o = 0; o < c.O; o += 7) scale.data<float>()[o] = 0.f;
    ConvGeometry g{c.stride, c.pad};
    Tensor e = binary_conv2d(xb, w, g, {BinaryOutputMode::SignPack, scale, shift});
    PackedWeights wg = w.to(Device::CUDA);
    Tensor th = sign_thresholds(wg, scale, shift, Device::CUDA);
    Tensor got = binary_conv2d(xb.cuda(), wg, g, {BinaryOutputMode::SignPack, scale.cuda(), shift.cuda(), th});
    require_equal_nhwc(got, e, "sign + re-pack, precomputed thresholds " + describe(c));
  }
}

TEST_CASE("W1A16 and W2A16 match the float convolution of bf16-rounded inputs") {
  // Each kernel against one CPU result a case (tolerance: tests/support/w1a16_case.h): "auto"
  // (on sm_90a builds on a compute capability 9.0 GPU for C % 8 == 0 the wgmma kernels, the
  // 256-pixel TMA one where it measured faster, else the cp.async one; mma.sync's fast path
  // elsewhere), "tma" (the TMA kernel wherever it can run: binary, O > 64), "cpasync" and
  // "mma" (mma.sync), through kernels/w1a16_wgmma.cu's
  // MDQ_W1A16_KERNEL switch. C % 8 != 0 takes the general path under all.
  std::vector<Case> cases(std::begin(kCases), std::end(kCases));
  cases.insert(cases.end(), std::begin(kW1A16Cases), std::end(kW1A16Cases));
  for (const Case& c : cases) {
    for (bool ternary : {false, true}) {
      const testing::W1A16Reference r = testing::w1a16_reference(c, ternary);
      const testing::W1A16DeviceInputs d(r);
      for (const char* kernel : {"auto", "tma", "cpasync", "mma"}) {
        const ScopedEnv choice("MDQ_W1A16_KERNEL", kernel);
        INFO("W1A16 kernel " << kernel << ": " << describe(c) << (ternary ? " ternary" : " binary"));
        testing::require_matches_w1a16_reference(
            r, d, [&](const FloatOutput& out) { return w1a16_conv2d(d.x, d.w, r.g, out); }, describe(c));
      }
    }
  }
}

TEST_CASE("W1A1 block end on the GPU: affine + residual in f32 and its signs packed") {
  const KernelChoice kernel = use_each_w1a1_kernel();
  INFO(kernel.label);
  for (const Case& c : {Case{2, 64, 9, 9, 64, 3, 1, 1}, Case{2, 128, 9, 9, 130, 3, 2, 1}, Case{1, 33, 7, 7, 37, 3, 1, 1}}) {
    INFO(describe(c));
    Tensor xb = pack_signs(random_signs({c.N, c.H, c.W, c.C}, 100 + c.C));
    PackedWeights w = pack_binary_weights(random_signs({c.O, c.C, c.K, c.K}, 101 + c.C));
    Tensor scale = testing::random_tensor({c.O}, 102, 0.01f, 0.1f), shift = testing::random_tensor({c.O}, 103, -1.f, 1.f);
    const int64_t OH = (c.H + 2 * c.pad - c.K) / c.stride + 1, OW = (c.W + 2 * c.pad - c.K) / c.stride + 1;
    Tensor residual = testing::random_tensor({c.N, OH, OW, c.O}, 104, -2.f, 2.f);
    ConvGeometry g{c.stride, c.pad};
    ResidualOutput e = binary_conv2d_residual(xb, w, g, scale, shift, residual);
    ResidualOutput got = binary_conv2d_residual(xb.cuda(), w.to(Device::CUDA), g, scale.cuda(), shift.cuda(), residual.cuda());
    // 1e-4 absolute (values up to ~100): the GPU may fuse scale d + shift into one FMA.
    testing::require_close(got.y, e.y, 1e-4f, 1e-6f, "affine + residual " + describe(c));
    // The signs are exactly those of the GPU's own sum.
    require_equal_nhwc(got.bits, pack_signs(got.y.cpu()), "signs of the sum " + describe(c));
  }
}

TEST_CASE("W1A1 block end on the GPU with a shortcut conv: the fused kernel equals the two steps bit for bit") {
  const KernelChoice kernel = use_each_w1a1_kernel();
  INFO(kernel.label);
  // ResNet-18's downsampling blocks (shortcut input 2, 4 and 8 words a pixel), an odd map (15 ->
  // 8), 96 channels out (a partial second slice), batch 1, more tiles than CTAs; the shortcut's C
  // = 96 (3 words a pixel) and a 3x3 shortcut take the two steps on every kernel.
  struct BlockCase {
    int64_t N, C, H, O, sk, spad;  // block input N x H x H x C, output O, shortcut sk x sk, padding spad
  };
  for (const BlockCase& c : {BlockCase{2, 64, 16, 128, 1, 0}, BlockCase{1, 128, 15, 256, 1, 0},
                             BlockCase{2, 256, 14, 512, 1, 0}, BlockCase{3, 64, 9, 96, 1, 0},
                             BlockCase{16, 64, 28, 128, 1, 0}, BlockCase{2, 96, 10, 64, 1, 0},
                             BlockCase{2, 64, 10, 64, 3, 1}}) {
    INFO("N " << c.N << " C " << c.C << " H " << c.H << " O " << c.O << " shortcut " << c.sk << "x" << c.sk);
    const int64_t OH = (c.H + 2 * c.spad - c.sk) / 2 + 1;
    const Tensor x = pack_signs(random_signs({c.N, c.H, c.H, c.C}, 120 + c.C)).cuda();
    const Tensor h = pack_signs(random_signs({c.N, OH, OH, c.O}, 121 + c.O)).cuda();
    const PackedWeights w = pack_binary_weights(random_signs({c.O, c.O, 3, 3}, 122 + c.O)).to(Device::CUDA);
    const PackedWeights ws = pack_binary_weights(random_signs({c.O, c.C, c.sk, c.sk}, 123 + c.C)).to(Device::CUDA);
    // Scales and shifts that put the sums' signs near their ties (both branches of similar size).
    const Tensor scale = testing::random_tensor({c.O}, 124, 0.01f, 0.1f, Device::CUDA);
    const Tensor shift = testing::random_tensor({c.O}, 125, -1.f, 1.f, Device::CUDA);
    const Tensor s_scale = testing::random_tensor({c.O}, 126, 0.02f, 0.2f, Device::CUDA);
    const Tensor s_shift = testing::random_tensor({c.O}, 127, -1.f, 1.f, Device::CUDA);
    const ConvGeometry gs{2, c.spad};
    bool fused = false;
    const Tensor got = binary_conv2d_shortcut_signs(h, w, {1, 1}, scale, shift, x, {ws, gs, s_scale, s_shift}, &fused);
    // (fused on the wgmma path; "ws" leaves this mode to the one-role kernel, as "auto" does)
    CHECK(fused == (!kernel.mma_sync && c.C % 64 == 0 && c.sk == 1 && wgmma_runs()));
    const Tensor skip = binary_conv2d(x, ws, gs, {BinaryOutputMode::Affine, s_scale, s_shift});
    const ResidualOutput two = binary_conv2d_residual(h, w, {1, 1}, scale, shift, skip);
    require_equal_nhwc(got.cpu(), two.bits.cpu(), "fused vs two steps");
    // Against the CPU's two steps: a bit may differ only where the sum is within f32 rounding of
    // 0 (the CPU rounds scale d before adding shift; the GPU fuses them).
    const Tensor y_cpu = binary_conv2d_residual(h.cpu(), w.to(Device::CPU), {1, 1}, scale.cpu(), shift.cpu(),
                                                binary_conv2d(x.cpu(), ws.to(Device::CPU), gs,
                                                              {BinaryOutputMode::Affine, s_scale.cpu(), s_shift.cpu()}))
                             .y;
    const std::vector<uint32_t> g = words(got.cpu()), e = words(pack_signs(y_cpu));
    const std::vector<float> yv = y_cpu.to_vector();
    const int64_t Ow = (c.O + 31) / 32;
    int64_t differ = 0, far = 0;
    for (int64_t p = 0; p < c.N * OH * OH; ++p)
      for (int64_t o = 0; o < c.O; ++o) {
        const uint32_t bit = 1u << (o % 32);
        if ((g[p * Ow + o / 32] & bit) != (e[p * Ow + o / 32] & bit)) {
          ++differ;
          far += std::fabs(yv[p * c.O + o]) > 1e-5f;
        }
      }
    INFO(differ << " bits differ from the CPU's, " << far << " of them away from a tie");
    CHECK(far == 0);
  }
}

TEST_CASE("W1A1 block end on the GPU: the identity skip as bits, equal to the CPU bit for bit") {
  const KernelChoice kernel = use_each_w1a1_kernel();
  INFO(kernel.label);
  // 64 channels (whole words), 130 (a partial third word; two channel slices), 37 (one partial
  // word), more tiles than the persistent grid has CTAs, and K = 18000 bits (C 2000, O 40: past
  // the two-channels-a-word sign epilogue's range).
  for (const Case& c : {Case{2, 64, 9, 9, 64, 3, 1, 1}, Case{2, 130, 9, 9, 130, 3, 1, 1}, Case{1, 37, 7, 7, 37, 3, 1, 1},
                        Case{8, 64, 40, 40, 64, 3, 1, 1}, Case{1, 2000, 4, 4, 40, 3, 1, 1}}) {
    INFO(describe(c));
    Tensor xb = pack_signs(random_signs({c.N, c.H, c.W, c.C}, 110 + c.C));
    PackedWeights w = pack_binary_weights(random_signs({c.O, c.C, c.K, c.K}, 111 + c.C));
    // Scales of both signs and shifts near the sums' integer grid (ties of affine ± 1 with 0).
    Tensor scale = testing::random_tensor({c.O}, 112, -0.1f, 0.1f), shift = testing::random_tensor({c.O}, 113, -3.f, 3.f);
    Tensor skip = pack_signs(random_signs({c.N, c.H, c.W, c.O}, 114 + c.O));
    ConvGeometry g{c.stride, c.pad};
    Tensor e = binary_conv2d_skip_signs(xb, w, g, scale, shift, skip);
    Tensor got = binary_conv2d_skip_signs(xb.cuda(), w.to(Device::CUDA), g, scale.cuda(), shift.cuda(), skip.cuda());
    require_equal_nhwc(got.cpu(), e, "skip signs " + describe(c));
    // The real-valued skip's end without its sum gives the signs it gives with it.
    Tensor residual = testing::random_tensor({c.N, c.H, c.W, c.O}, 115, -2.f, 2.f).cuda();
    ResidualOutput both = binary_conv2d_residual(xb.cuda(), w.to(Device::CUDA), g, scale.cuda(), shift.cuda(), residual);
    ResidualOutput bits = binary_conv2d_residual(xb.cuda(), w.to(Device::CUDA), g, scale.cuda(), shift.cuda(), residual, false);
    REQUIRE_FALSE(bits.y.defined());
    require_equal_nhwc(bits.bits.cpu(), both.bits.cpu(), "residual signs without the sum " + describe(c));
  }
}

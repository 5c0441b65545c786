// The workshop's tensor-core stem (dev/kernels/stem_conv_mma.cu) against its CPU reference
// (dev::reference in dev/kernels/stem_conv_mma.h: bf16-rounded images and weights, sums in
// double), on random non-zero inputs (tests/support/stem_case.h: images in [-2, 2), weights in
// [-0.5, 0.5), scales of both signs, shifts in [-1, 1)): ImageNet ResNet-18's stem at batch 2
// (224x224 -> 112x112, 7x7 stride 2 pad 3, 64 filters), a CIFAR-like odd shape (33x33, 3x3
// stride 1 pad 1, 16 filters), 7x7 stride 2 pad 3 with 32 filters at batch 1, the direct stem's
// test shapes (1 to 4 channels, 5x5 unpadded, 1x1, partial tiles at every edge), and batches
// with more tiles than resident CTAs at both strides; ReLU on and off; all three output forms.
//
// Tolerance, per output (o its filter): tol = 1e-5 (|scale[o]| sum |terms| + |shift[o]|) + 1e-6.
// The reference and the kernel take the same bf16-rounded products, each exact in f32, so they
// differ only by the kernel's f32 sums (a rounding per MMA accumulation and inside the tensor
// core's 16-term dot products: for K <= 224 taps well under 1e-5 of sum |terms|, about a dozen
// f32 roundings of 2^-23 or less, even where the hardware truncates) and the epilogue's one fma
// (2^-24 of |scale d + shift|).
//   - f32 form: |gpu - ref| <= tol, ref = act(scale d + shift) in double;
//   - bf16 form: one more rounding to bf16 (at most 2^-8 of the value): <= tol + 2^-8 (|ref| + tol);
//   - signs form: bits equal wherever the bit is decided beyond the tolerance (ReLU on: always 1;
//     off: |scale d + shift| > tol); nearer 0 a bit may flip, and those undecided outputs must be
//     at most 0.1% of all (so the comparison still covers almost every bit).
// Each launcher also writes nothing past its output (a poisoned tail stays as it was).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "dev/kernels/stem_conv_mma.h"
#include "engine/packed/bitpack.h"
#include "tests/support/stem_case.h"
#include "tests/support/testing.h"

using namespace mdq;
using testing::StemCase;

namespace {

constexpr uint32_t kPoison = 0xdeadbeefu;
constexpr int64_t kTail = 64;  // poisoned words after each output

// The reference's values for every output (NHWC order): pre = scale d + shift, tol as above.
struct Reference {
  std::vector<double> pre, tol;
};
Reference reference_of(const StemCase& s, const kernels::StemConvArgs& host) {
  Reference r;
  const size_t n = size_t(s.N * s.OH() * s.OW() * s.O);
  r.pre.reserve(n);
  r.tol.reserve(n);
  for (int b = 0; b < int(s.N); ++b)
    for (int oh = 0; oh < int(s.OH()); ++oh)
      for (int ow = 0; ow < int(s.OW()); ++ow)
        for (int o = 0; o < int(s.O); ++o) {
          double abs_sum = 0;
          const double d = dev::reference::stem_mma_sum(host, b, oh, ow, o, &abs_sum);
          r.pre.push_back(dev::reference::stem_mma_pre(host, d, o));
          const double sc = host.scale ? std::fabs(double(host.scale[o])) : 1.0;
          const double sh = host.shift ? std::fabs(double(host.shift[o])) : 0.0;
          r.tol.push_back(1e-5 * (sc * abs_sum + sh) + 1e-6);
        }
  return r;
}

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

float as_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

void check_case(const StemCase& s, uint64_t seed) {
  INFO(s.text());
  const testing::StemInputs in = testing::stem_inputs(s, seed);
  const Tensor xg = in.x.cuda(), wg = in.w.cuda(), sg = in.scale.cuda(), hg = in.shift.cuda();
  const kernels::StemConvArgs host =
      args_of(s, in.x.data<float>(), in.w.data<float>(), in.scale.data<float>(), in.shift.data<float>());
  const kernels::StemConvArgs dev_args =
      args_of(s, xg.data<float>(), wg.data<float>(), sg.data<float>(), hg.data<float>());
  const Reference ref = reference_of(s, host);
  const int64_t outputs = int64_t(ref.pre.size());
  auto value = [&](size_t i) { return s.relu ? std::max(ref.pre[i], 0.0) : ref.pre[i]; };

  {  // f32 NHWC
    const std::vector<uint32_t> got =
        run_poisoned(outputs, [&](uint32_t* y) { REQUIRE(dev::stem_conv_mma_nhwc_f32(dev_args, reinterpret_cast<float*>(y))); });
    int64_t outside = 0;
    double worst = 0;
    for (size_t i = 0; i < size_t(outputs); ++i) {
      const double err = std::fabs(double(as_float(got[i])) - value(i));
      outside += !(err <= ref.tol[i]);
      worst = std::max(worst, err / ref.tol[i]);
    }
    INFO("f32: worst |gpu - ref| / tol = " << worst);
    CHECK(outside == 0);
    CHECK(tail_written(got, outputs) == 0);
  }
  {  // bf16 NHWC (two values a word)
    const std::vector<uint32_t> got = run_poisoned(outputs / 2, [&](uint32_t* y) {
      REQUIRE(dev::stem_conv_mma_nhwc_bf16(dev_args, reinterpret_cast<uint16_t*>(y)));
    });
    int64_t outside = 0;
    for (size_t i = 0; i < size_t(outputs); ++i) {
      const uint16_t b = uint16_t(got[i / 2] >> (16 * (i % 2)));  // little-endian: the lower address first
      const double v = value(i), bound = ref.tol[i] + std::ldexp(std::fabs(v) + ref.tol[i], -8);
      outside += !(std::fabs(double(bf16_to_float(b)) - v) <= bound);
    }
    CHECK(outside == 0);
    CHECK(tail_written(got, outputs / 2) == 0);
  }
  if (s.O % 32 == 0) {  // the signs
    const std::vector<uint32_t> got =
        run_poisoned(outputs / 32, [&](uint32_t* y) { REQUIRE(dev::stem_conv_mma_signs(dev_args, y)); });
    int64_t wrong = 0, undecided = 0;
    for (size_t i = 0; i < size_t(outputs); ++i) {
      if (!s.relu && std::fabs(ref.pre[i]) <= ref.tol[i]) {
        ++undecided;
        continue;
      }
      const bool want = s.relu || ref.pre[i] >= 0, bit = (got[i / 32] >> (i % 32)) & 1u;
      wrong += bit != want;
    }
    INFO("undecided (|scale d + shift| <= tol): " << undecided << " of " << outputs);
    CHECK(wrong == 0);
    CHECK(undecided * 1000 <= outputs);
    CHECK(tail_written(got, outputs / 32) == 0);
  }
}

}  // namespace

TEST_CASE("dev tensor-core stem matches the bf16-rounded convolution within f32 summation error") {
  {
    const StemCase s{1, 3, 9, 9, 16, 3, 1, 1, false};
    const testing::StemInputs in = testing::stem_inputs(s, 1);
    const Tensor xg = in.x.cuda(), wg = in.w.cuda();
    Tensor y = Tensor::empty({s.N, s.OH(), s.OW(), s.O}, DType::F32, Device::CUDA);
    if (!dev::stem_conv_mma_nhwc_f32(args_of(s, xg.data<float>(), wg.data<float>(), nullptr, nullptr),
                                     y.data<float>())) {
      WARN("not run: the dev tensor-core stem needs bf16 mma.sync (compute capability 8.0 or later)");
      return;
    }
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
  };
  for (const StemCase& s : testing::stem_cases()) cases.push_back(s);
  uint64_t seed = 2600;
  for (const StemCase& s : cases) check_case(s, seed += 10);
}

TEST_CASE("dev tensor-core stem refuses the shapes the direct kernel refuses") {
  const float* p = nullptr;
  kernels::StemConvArgs a = args_of({1, 5, 9, 9, 16, 3, 1, 1, false}, p, p, p, p);  // 5 channels
  REQUIRE_THROWS_WITH(dev::stem_conv_mma_nhwc_f32(a, nullptr), Catch::Contains("does not take"));
  a = args_of({1, 3, 9, 9, 16, 3, 1, 1, false}, p, p, p, p);  // signs of 16 filters
  REQUIRE_THROWS_WITH(dev::stem_conv_mma_signs(a, nullptr), Catch::Contains("does not take"));
}

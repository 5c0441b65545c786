// The direct stem's test cases, shared by tests/cpu/test_stem_conv.cpp and its GPU twin: shapes,
// seeded inputs (never zero), the exact value of each output in double with the magnitude its
// rounding errors scale with, a Bf16Stem step built by hand, and its two ways of running.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "common/scoped_env.h"
#include "common/window.h"
#include "engine/infer/steps.h"
#include "engine/packed/bitpack.h"
#include "engine/packed/stem_conv.h"
#include "tests/support/inputs.h"
#include "tests/support/testing.h"

namespace mdq::testing {

struct StemCase {
  int64_t N, C, H, W, O, K, stride, pad;
  bool relu;
  ops::Conv2dParams params() const { return {stride, pad, 1}; }
  int64_t OH() const { return ops::window_output_size(H, K, stride, pad); }
  int64_t OW() const { return ops::window_output_size(W, K, stride, pad); }
  std::string text() const {
    std::ostringstream s;
    s << "N " << N << " C " << C << " " << H << "x" << W << " O " << O << " " << K << "x" << K << " stride " << stride
      << " pad " << pad << (relu ? " relu" : "");
    return s.str();
  }
};

// Batch 1 and 3; 1, 3 and 4 channels; 16, 32 and 64 filters; 3x3 stride 1 and 7x7 stride 2
// padded, plus an unpadded 5x5 and a 1x1; outputs that are not multiples of the 16x16 tile (and
// one smaller than a tile), so partial tiles meet every edge.
inline std::vector<StemCase> stem_cases() {
  return {{1, 3, 37, 29, 64, 7, 2, 3, true},  {3, 3, 45, 50, 64, 7, 2, 3, false}, {3, 1, 19, 33, 16, 3, 1, 1, true},
          {1, 4, 23, 17, 32, 3, 1, 1, false}, {3, 4, 40, 35, 16, 7, 2, 3, true},  {1, 1, 30, 41, 32, 7, 2, 3, false},
          {3, 3, 17, 18, 32, 3, 1, 1, true},  {1, 3, 11, 7, 64, 3, 1, 1, true},   {3, 4, 21, 26, 64, 5, 2, 0, true},
          {1, 3, 13, 15, 16, 1, 1, 0, false}};
}

struct StemInputs {
  Tensor x, w, scale, shift;  // f32 NCHW images, [O][C][K][K], [O], [O]; on the CPU
};

// Images in [-2, 2), weights in [-0.5, 0.5), scales of both signs, shifts in [-1, 1); never 0.
inline StemInputs stem_inputs(const StemCase& s, uint64_t seed) {
  return {random_tensor({s.N, s.C, s.H, s.W}, seed, -2.f, 2.f), random_tensor({s.O, s.C, s.K, s.K}, seed + 1, -.5f, .5f),
          random_tensor({s.O}, seed + 2, -2.f, 2.f), random_tensor({s.O}, seed + 3, -1.f, 1.f)};
}

// Per output element (NHWC order): value = act(scale d + shift) with d the exact convolution (in
// double); pre = scale d + shift before the activation; abs_sum = sum |x w| (the taps inside the
// image), scale = the filter's; magnitude = |scale| abs_sum + |shift|, what an f32
// computation's rounding errors are relative to.
struct StemExact {
  std::vector<double> value, pre, abs_sum, scale, magnitude;
};
inline StemExact stem_exact(const StemCase& s, const StemInputs& in) {
  const std::vector<float> x = in.x.to_vector(), w = in.w.to_vector();
  const std::vector<float> sc = in.scale.defined() ? in.scale.to_vector() : std::vector<float>(s.O, 1.f);
  const std::vector<float> sh = in.shift.defined() ? in.shift.to_vector() : std::vector<float>(s.O, 0.f);
  StemExact e;
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t oh = 0; oh < s.OH(); ++oh)
      for (int64_t ow = 0; ow < s.OW(); ++ow)
        for (int64_t o = 0; o < s.O; ++o) {
          double d = 0, a = 0;
          for (int64_t c = 0; c < s.C; ++c)
            for (int64_t kh = 0; kh < s.K; ++kh)
              for (int64_t kw = 0; kw < s.K; ++kw) {
                const int64_t ih = oh * s.stride - s.pad + kh, iw = ow * s.stride - s.pad + kw;
                if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
                const double p = double(x[size_t(((n * s.C + c) * s.H + ih) * s.W + iw)]) *
                                 double(w[size_t(((o * s.C + c) * s.K + kh) * s.K + kw)]);
                d += p;
                a += std::fabs(p);
              }
          const double y = double(sc[size_t(o)]) * d + double(sh[size_t(o)]);
          e.value.push_back(s.relu ? std::max(y, 0.0) : y);
          e.pre.push_back(y);
          e.scale.push_back(sc[size_t(o)]);
          e.abs_sum.push_back(a);
          e.magnitude.push_back(std::fabs(double(sc[size_t(o)])) * a + std::fabs(double(sh[size_t(o)])));
        }
  return e;
}

// A Bf16Stem as lower.cpp builds it: the weights zero-padded to 8 input channels for the three
// passes, the layer's own for the direct kernel (when it takes them), the affine, on `device`.
inline infer::Bf16Stem stem_step(const StemCase& s, const StemInputs& in, DType dense, Device device) {
  infer::Bf16Stem stem;
  const int64_t Cp = (s.C + 7) / 8 * 8, T = s.K * s.K;
  Tensor padded = Tensor::zeros({s.O, Cp, s.K, s.K});
  const float* src = in.w.data<float>();
  float* dst = padded.data<float>();
  for (int64_t o = 0; o < s.O; ++o)
    for (int64_t i = 0; i < s.C * T; ++i) dst[o * Cp * T + i] = src[o * s.C * T + i];
  stem.weight = padded.to(device);
  if (packed::stem_conv_fits(in.w, s.params())) stem.direct_weight = in.w.to(device);
  stem.scale = in.scale.to(device);
  stem.shift = in.shift.to(device);
  stem.params = s.params();
  stem.relu = s.relu;
  stem.dense = dense;
  return stem;
}

// The step run on x both ways: directly (MDQ_STEM_DIRECT unset) and by its three passes
// (MDQ_STEM_DIRECT=0); the variable is left as it was found.
struct StemRuns {
  Tensor direct, three_pass;
};
inline StemRuns run_both_ways(const infer::Bf16Stem& stem, const Tensor& x) {
  StemRuns r;
  for (const char* value : {"0", static_cast<const char*>(nullptr)}) {
    const ScopedEnv env("MDQ_STEM_DIRECT", value);
    infer::Activation a{x.to(stem.weight.device())};
    stem.run(a);
    (value ? r.three_pass : r.direct) = a.x;
  }
  return r;
}

// As f32 on the host (bf16 widened, exactly).
inline std::vector<float> host_values(const Tensor& t) {
  return (t.dtype() == DType::BF16 ? packed::to_f32(t.cpu()) : t.cpu()).to_vector();
}

// How many elements of the direct and three-pass results differ by more than
//   2^-8 (4 |scale| sum |x w| + 3 |scale d + shift|):
// the three passes round the images and the weights to bf16 (2^-8 relative each: at most
// ~2^-7 sum |x w| in d), the sum d to bf16 (2^-8 |d|) and the output to bf16 (2^-8 |y|); the
// direct pass rounds the output once (bf16 Dense) or not at all (f32). A ReLU only shrinks a
// difference. The f32 sums' own errors (~2^-24 per term) fit in the slack.
inline int64_t outside_bf16_bound(const StemCase& s, const StemInputs& in, const Tensor& direct,
                                  const Tensor& three_pass) {
  const StemExact e = stem_exact(s, in);
  const std::vector<float> a = host_values(direct), b = host_values(three_pass);
  if (a.size() != e.value.size() || b.size() != e.value.size()) return -1;
  int64_t outside = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double bound = std::ldexp(1.0, -8) * (4 * std::fabs(e.scale[i]) * e.abs_sum[i] + 3 * std::fabs(e.pre[i]));
    outside += !(std::fabs(double(a[i]) - double(b[i])) <= bound);
  }
  return outside;
}

// ---- the signs form (packed::stem_conv_signs, Bf16Stem::signs)

// What Binarize hands on after the stem's f32 form: its signs packed (bit 1: y >= 0).
inline Tensor signs_of_f32_form(const Tensor& x, const StemInputs& in, const StemCase& s) {
  return packed::pack_signs(packed::stem_conv_nhwc(x, in.w.to(x.device()), in.scale.to(x.device()),
                                                   in.shift.to(x.device()), s.params(), s.relu, DType::F32));
}

// Inputs (N >= 2) whose epilogue lands exactly on 0: even filters o get scale 1 and shift -d,
// d the f32 sum of image 0 at pixel (o % OH, o % OW), so fma(d, 1, -d) = +0 there; odd filters
// scale -1 and shift -0, and the last image is all zeros, so d = +0 there (every fma adds a
// signed zero to +0) and fma(+0, -1, -0) = -0. Both zeros are signs >= 0: bit 1.
inline StemInputs stem_tie_inputs(const StemCase& s, uint64_t seed) {
  StemInputs in = stem_inputs(s, seed);
  float* x = in.x.data<float>();
  std::fill(x + (s.N - 1) * s.C * s.H * s.W, x + s.N * s.C * s.H * s.W, 0.f);
  const Tensor d = packed::stem_conv_nhwc(in.x, in.w, Tensor(), Tensor(), s.params(), false, DType::F32);
  const float* pd = d.data<float>();
  float* sc = in.scale.data<float>();
  float* sh = in.shift.data<float>();
  for (int64_t o = 0; o < s.O; ++o) {
    const int64_t oh = o % s.OH(), ow = o % s.OW();
    sc[o] = o % 2 ? -1.f : 1.f;
    sh[o] = o % 2 ? -0.f : -pd[(oh * s.OW() + ow) * s.O + o];
  }
  return in;
}

// MDQ_STEM_DIRECT set to `value` (null: unset) for the object's lifetime.
struct StemDirectEnv : ScopedEnv {
  explicit StemDirectEnv(const char* value) : ScopedEnv("MDQ_STEM_DIRECT", value) {}
};

// How many bits of two sign maps (u32 [N][OH][OW][O/32]) differ where the exact value is farther
// from 0 than outside_bf16_bound's bound (a sign nearer 0 may flip under the three passes'
// roundings), and in all.
struct SignFlips {
  int64_t clear = 0, all = 0;
};
inline SignFlips sign_flips(const StemCase& s, const StemInputs& in, const Tensor& a, const Tensor& b) {
  const StemExact e = stem_exact(s, in);
  const std::vector<uint32_t> x = words(a), y = words(b);
  SignFlips f;
  if (x.size() != y.size() || x.size() * 32 != e.pre.size()) return {-1, -1};
  for (size_t i = 0; i < e.pre.size(); ++i) {
    const bool differ = ((x[i / 32] ^ y[i / 32]) >> (i % 32)) & 1u;
    const double bound = std::ldexp(1.0, -8) * (4 * std::fabs(e.scale[i]) * e.abs_sum[i] + 3 * std::fabs(e.pre[i]));
    f.all += differ;
    f.clear += differ && std::fabs(e.value[i]) > bound;
  }
  return f;
}

}  // namespace mdq::testing

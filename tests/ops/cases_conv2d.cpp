// Op table entries for 2-D convolution: forward and the three backward pieces, with and without
// bias, over strides, padding, groups and depthwise, and its naive reference.
#include <array>
#include <sstream>

#include "engine/nn/conv2d.h"
#include "engine/ops/conv2d.h"
#include "tests/ops/op_table.h"
#include "tests/support/inputs.h"

namespace mdq::optest {
namespace {

using ops::Conv2dParams;

struct ConvShape {
  int64_t N, C, H, W, O, KH, KW;
  Conv2dParams p;
};

// The definition, written as plainly as possible: every output, every tap, bounds checked,
// accumulated in double.
Tensor naive_conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p) {
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const int64_t O = w.dim(0), Cg = w.dim(1), KH = w.dim(2), KW = w.dim(3);
  const int64_t OH = (H + 2 * p.padding - KH) / p.stride + 1, OW = (W + 2 * p.padding - KW) / p.stride + 1;
  Tensor y = Tensor::zeros({N, O, OH, OW});
  const float *px = x.data<float>(), *pw = w.data<float>();
  float* py = y.data<float>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t i = 0; i < OH; ++i)
        for (int64_t j = 0; j < OW; ++j) {
          double acc = bias.defined() ? bias.data<float>()[o] : 0.0;
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t kh = 0; kh < KH; ++kh)
              for (int64_t kw = 0; kw < KW; ++kw) {
                const int64_t ih = i * p.stride - p.padding + kh, iw = j * p.stride - p.padding + kw;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                const int64_t ci = (o / (O / p.groups)) * Cg + c;
                acc += double(pw[((o * Cg + c) * KH + kh) * KW + kw]) * px[((n * C + ci) * H + ih) * W + iw];
              }
          py[((n * O + o) * OH + i) * OW + j] = static_cast<float>(acc);
        }
  return y;
}

// Inputs in [-1, 1): an output sums C/groups * K * K products, so its size grows like the square
// root of that; the GPU bounds are relative to the output's rms for that reason.
//   fp32: 1e-4 of rms. Summation order and Winograd/FFT transforms stay near 1e-6, while a TF32
//         result (10-bit mantissa, ~5e-4) would fail: this also checks that FP32 is FMA math.
//   tf32: 1e-2 of rms.
//   bf16: operands and results rounded to bf16 (2^-9 relative, ~2e-3): 1e-2 of the value for the
//         result's rounding plus 3e-2 of rms for the operands' (each product off by up to 4e-3
//         relative, the sum's error growing like sqrt(K) while the rms does too).
//   reference (CPU float vs double): 1e-5.
OpCase conv2d_case(const ConvShape& s, bool with_bias, uint64_t seed) {
  const Conv2dParams p = s.p;
  OpCase c;
  c.op = "conv2d";
  std::ostringstream name;
  name << "conv2d x[" << s.N << ", " << s.C << ", " << s.H << ", " << s.W << "] w[" << s.O << ", " << s.C / p.groups
       << ", " << s.KH << ", " << s.KW << "] stride " << p.stride << " padding " << p.padding << " groups " << p.groups
       << (with_bias ? " bias" : " no bias");
  c.name = name.str();
  c.inputs = {testing::random_tensor({s.N, s.C, s.H, s.W}, seed),
              testing::random_tensor({s.O, s.C / p.groups, s.KH, s.KW}, seed + 1)};
  if (with_bias) c.inputs.push_back(testing::random_tensor({s.O}, seed + 2));
  c.output_names = {"y"};
  auto bias_of = [](const Tensors& in) { return in.size() > 2 ? in[2] : Tensor(); };
  c.forward = [p, bias_of](const Tensors& in) { return Tensors{ops::conv2d_forward(in[0], in[1], bias_of(in), p)}; };
  c.wrt = with_bias ? std::vector<int>{0, 1, 2} : std::vector<int>{0, 1};
  c.backward = [p](const Tensors& in, const Tensors& g) {
    ops::Conv2dGrads both = ops::conv2d_backward(g[0], in[0], in[1], p, true, true);
    Tensors grads{both.input, both.weight};
    if (in.size() > 2) grads.push_back(ops::conv2d_backward_bias(g[0]));
    return grads;
  };
  c.reference = [p, bias_of](const Tensors& in) { return Tensors{naive_conv2d(in[0], in[1], bias_of(in), p)}; };
  c.reference_bound = {1e-5f, 1e-5f, 1e-5f};
  c.layer = [p](std::vector<Var>& v) { return nn::conv2d(v[0], v[1], v.size() > 2 ? v[2] : Var(), p); };
  const Bound fp32{0, 1e-4f, 1e-4f}, tf32{0, 1e-2f, 1e-2f}, bf16{0, 1e-2f, 3e-2f};
  c.tolerances[Precision::FP32] = {{fp32}, {fp32}};
  c.tolerances[Precision::TF32] = {{tf32}, {tf32}};
  c.tolerances[Precision::BF16] = {{bf16}, {bf16}};
  return c;
}

std::vector<ConvShape> check_shapes() {
  std::vector<ConvShape> v = {
      // Small odd shapes: padding, stride 2 with groups, depthwise, a stride that drops the last
      // row and column, non-square kernels, a 5x5 kernel wider than the padded input is tall.
      {2, 3, 5, 4, 4, 3, 3, {1, 1, 1}}, {1, 4, 6, 5, 2, 3, 3, {2, 1, 2}}, {2, 3, 5, 5, 3, 3, 3, {1, 0, 3}},
      {1, 2, 7, 5, 3, 2, 2, {2, 0, 1}}, {2, 3, 7, 6, 4, 3, 3, {1, 1, 1}}, {1, 4, 9, 8, 6, 3, 3, {2, 1, 2}},
      {3, 5, 6, 7, 5, 3, 3, {1, 0, 5}}, {2, 2, 8, 5, 3, 3, 2, {3, 2, 1}}, {1, 6, 5, 5, 4, 1, 1, {2, 0, 2}},
      {2, 3, 4, 4, 3, 5, 5, {1, 2, 1}},
  };
  // A sweep of batch, groups (dense, grouped, depthwise) and stride/padding on an odd 7x9 input.
  for (int64_t N : {1, 3})
    for (auto [C, O, groups] : {std::array<int64_t, 3>{4, 6, 1}, {4, 6, 2}, {5, 5, 5}})
      for (auto [stride, padding] : {std::array<int64_t, 2>{1, 0}, {1, 1}, {2, 0}, {2, 1}})
        v.push_back({N, C, 7, 9, O, 3, 3, {stride, padding, groups}});
  v.push_back({3, 3, 11, 11, 8, 5, 5, {2, 2, 1}});     // 5x5 kernel, stem-like
  v.push_back({2, 16, 15, 13, 24, 1, 1, {1, 0, 1}});   // 1x1 projection
  v.push_back({2, 8, 9, 7, 16, 3, 3, {2, 1, 1}});      // channels in 8s: the bf16 copies' path
  v.push_back({2, 16, 16, 16, 32, 1, 1, {2, 0, 1}});   // ResNet downsample shortcut
  v.push_back({3, 32, 17, 17, 32, 3, 3, {1, 1, 1}});   // wider, odd
  v.push_back({3, 32, 17, 17, 32, 3, 3, {2, 1, 32}});  // depthwise stride 2 (MobileNetV2)
  return v;
}

// CIFAR ResNet-18's convolutions at batch 32, and a MobileNetV2 depthwise one.
std::vector<ConvShape> perf_shapes() {
  return {{32, 3, 32, 32, 64, 3, 3, {1, 1, 1}},   {32, 64, 32, 32, 64, 3, 3, {1, 1, 1}},
          {32, 64, 32, 32, 128, 3, 3, {2, 1, 1}}, {32, 128, 16, 16, 128, 3, 3, {1, 1, 1}},
          {32, 256, 8, 8, 256, 3, 3, {1, 1, 1}},  {32, 512, 4, 4, 512, 3, 3, {1, 1, 1}},
          {32, 64, 32, 32, 128, 1, 1, {2, 0, 1}}, {32, 128, 16, 16, 128, 3, 3, {1, 1, 128}}};
}

}  // namespace

void add_conv2d_cases(std::vector<OpCase>& table, bool perf) {
  uint64_t seed = 100;
  for (const ConvShape& s : perf ? perf_shapes() : check_shapes())
    for (bool with_bias : {true, false}) {
      if (perf && !with_bias) continue;
      table.push_back(conv2d_case(s, with_bias, seed));
      seed += 10;
    }
}

}  // namespace mdq::optest

// Depthwise convolution on NHWC bf16 activations on the GPU (kernels/depthwise_nhwc.cu, reached
// through ops::conv2d_forward / ops::conv2d_backward on NHWC bf16 tensors, as the bf16 training
// path reaches it) against the CPU reference of the same op (engine/ops/conv2d.cpp,
// cpu_forward_nhwc / cpu_backward_nhwc: f32 loops on the widened activations and the
// bf16-rounded filter, each bf16 result rounded once); and relu6 on bf16 activations against its
// f32 rule on the widened values.
//
// Inputs are random and never zero: x in [-2, 2], w, bias and dy in [-1, 1]. Shapes: 3x3 stride
// 1 and 2 (padding 1), 5x5 stride 2 (padding 2), 1x1, square and not; C = 16, 24, 32, 40, 96, 144,
// 200 (the 16-byte path; 200 in four channel slices), C = 3, 20, 130 (the scalar path), and C = 16
// with x two bytes off the 16-byte alignment (the scalar path); batch 1 to 8; one chunk of pixels
// and several. Outputs the kernels do not write would show as garbage far outside the bounds.
//
// Tolerances:
//  - y and dx (bf16): |got - ref| <= 2^-7 |ref| + 2^-9 rms(ref) per element. Both sides add the
//    same products (bf16 x bf16 is exact in f32) in the same (kh, kw) order, so they should agree
//    bit for bit (the count of elements that do not is printed); the bound allows one bf16 ulp
//    (at most 2^-7 relative) should the f32 sums still differ in their last bits, plus a floor
//    for sums that cancel to ~0. A missing or wrong tap moves an element by about |x w| ~ rms/3.
//  - dw (f32): |got - ref| <= n 2^-23 sum |dy x| per element, n = N OH OW the terms of each sum:
//    an f32 sum of n terms in any order is within (n - 1) 2^-24 sum |terms| of the exact one, and
//    each side makes one (the GPU by chunks and lanes, the CPU by batch chunks).
//  - run twice: y, dx and dw the same bits; dw alone (no dx wanted) the same bits as with dx.
//  - relu6 (bf16): forward and backward equal the f32 rule on the widened values, rounded once,
//    bit for bit; an NHWC bf16 input stays NHWC bf16 through nn::relu6.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "common/bf16.h"
#include "engine/nn/activation.h"
#include "engine/nn/functional.h"
#include "engine/nn/layout.h"
#include "engine/ops/activation.h"
#include "engine/ops/conv2d.h"
#include "engine/ops/layout.h"
#include "engine/packed/bitpack.h"
#include "kernels/activation.h"
#include "tests/support/testing.h"

using namespace mdq;

namespace {

struct Case {
  int64_t n, c, h, w, k, stride, pad;
  bool bias = false;
  int64_t offset = 0;  // elements: 1 puts x two bytes off the 16-byte alignment
};

std::string name_of(const Case& k) {
  std::ostringstream s;
  s << "N " << k.n << ", C " << k.c << ", " << k.h << "x" << k.w << ", " << k.k << "x" << k.k << " stride " << k.stride
    << " padding " << k.pad << (k.bias ? ", bias" : "") << (k.offset ? ", x misaligned" : "");
  return s.str();
}

// An NHWC bf16 copy of the f32 NCHW values on `d`, starting `offset` elements into its storage.
Tensor nhwc_on(const Tensor& nchw, Device d, int64_t offset) {
  const Tensor h = ops::to_nhwc_bf16(nchw);
  if (offset == 0) return h.to(d);
  Tensor view = Tensor::empty({h.numel() + offset}, DType::BF16, d).window(offset, h.shape());
  view.copy_from(h);
  return view;
}

// A bf16 tensor's values as f32 on the CPU (exact), in its own layout.
Tensor widened(const Tensor& t) { return packed::to_f32(t.cpu()); }

Tensor abs_of(const Tensor& t) {
  Tensor a = t.cpu().clone();
  float* p = a.data<float>();
  for (int64_t i = 0; i < a.numel(); ++i) p[i] = std::fabs(p[i]);
  return a;
}

// Elements of two bf16 tensors that are not the same bits.
int64_t differing(const Tensor& a, const Tensor& b) {
  const std::vector<uint32_t> x = testing::bits(widened(a)), y = testing::bits(widened(b));
  int64_t n = 0;
  for (size_t i = 0; i < x.size(); ++i) n += x[i] != y[i];
  return n;
}

void require_same_bits(const Tensor& a, const Tensor& b, const std::string& what) {
  INFO(what << ": a second run gave other bits");
  REQUIRE(testing::bits(a.dtype() == DType::BF16 ? widened(a) : a) ==
          testing::bits(b.dtype() == DType::BF16 ? widened(b) : b));
}

// y or dx (bf16) within 2^-7 |ref| + 2^-9 rms(ref) of the reference (head comment).
void require_bf16_output(const Tensor& got, const Tensor& ref, const std::string& what) {
  REQUIRE(got.dtype() == DType::BF16);
  REQUIRE(got.shape() == ref.shape());
  testing::require_close(widened(got), widened(ref), testing::Bound{0.f, 0x1p-7f, 0x1p-9f}, what);
  const int64_t off = differing(got, ref);
  if (off) WARN(what << ": " << off << " of " << ref.numel() << " elements are not the CPU reference's bits");
}

void check_case(const Case& k) {
  const std::string name = name_of(k);
  INFO(name);
  const uint64_t seed = static_cast<uint64_t>(k.n * 1000003 + k.c * 1009 + k.h * 31 + k.k * 7 + k.stride);
  const ops::Conv2dParams p{k.stride, k.pad, k.c};
  const Tensor x32 = testing::random_tensor({k.n, k.c, k.h, k.w}, seed, -2.f, 2.f);
  const Tensor w = testing::random_tensor({k.c, 1, k.k, k.k}, seed + 1);
  const Tensor bias = k.bias ? testing::random_tensor({k.c}, seed + 2) : Tensor();
  const Shape ys = ops::conv2d_output_shape(x32.shape(), w.shape(), p);  // NCHW
  const Tensor dy32 = testing::random_tensor(ys, seed + 3);

  // ---- the CPU reference (NHWC bf16 tensors on the CPU take cpu_forward_nhwc / cpu_backward_nhwc)
  const Tensor x_h = ops::to_nhwc_bf16(x32), dy_h = ops::to_nhwc_bf16(dy32);
  const Tensor y_ref = ops::conv2d_forward(x_h, w, bias, p);
  const ops::Conv2dGrads g_ref = ops::conv2d_backward(dy_h, x_h, w, p, true, true);
  // Σ|dy x| per weight: the same reference on |dy| and |x| (exact in bf16).
  const Tensor dw_scale =
      ops::conv2d_backward(ops::to_nhwc_bf16(abs_of(dy32)), ops::to_nhwc_bf16(abs_of(x32)), w, p, false, true).weight;

  // ---- the GPU, twice
  const Tensor x_d = nhwc_on(x32, Device::CUDA, k.offset), dy_d = nhwc_on(dy32, Device::CUDA, 0);
  const Tensor w_d = w.cuda(), bias_d = k.bias ? bias.cuda() : Tensor();
  const Tensor y = ops::conv2d_forward(x_d, w_d, bias_d, p);
  REQUIRE(ops::is_nhwc_bf16(y));
  require_bf16_output(y, y_ref, "y");
  const ops::Conv2dGrads g = ops::conv2d_backward(dy_d, x_d, w_d, p, true, true);
  require_bf16_output(g.input, g_ref.input, "dx");

  const int64_t terms = ys[0] * ys[2] * ys[3];
  const std::vector<float> dw = g.weight.to_vector(), dw_ref = g_ref.weight.to_vector(), scale = dw_scale.to_vector();
  for (size_t i = 0; i < dw.size(); ++i) {
    const double bound = static_cast<double>(terms) * 0x1p-23 * scale[i];
    INFO("dw element " << i << ": got " << dw[i] << ", expected " << dw_ref[i] << ", sum of |dy x| " << scale[i]
                       << ", " << terms << " terms");
    REQUIRE(std::fabs(static_cast<double>(dw[i]) - dw_ref[i]) <= bound);
  }

  require_same_bits(ops::conv2d_forward(x_d, w_d, bias_d, p), y, "y");
  const ops::Conv2dGrads again = ops::conv2d_backward(dy_d, x_d, w_d, p, true, true);
  require_same_bits(again.input, g.input, "dx");
  require_same_bits(again.weight, g.weight, "dw");
  const ops::Conv2dGrads dw_only = ops::conv2d_backward(dy_d, x_d, w_d, p, false, true);
  REQUIRE_FALSE(dw_only.input.defined());
  require_same_bits(dw_only.weight, g.weight, "dw without dx");
}

}  // namespace

TEST_CASE("depthwise convolution on NHWC bf16 on the GPU matches the CPU reference, forward and backward") {
  const Case cases[] = {
      {2, 16, 9, 9, 3, 1, 1},             // 3x3 stride 1, the 16-byte path
      {2, 24, 9, 9, 3, 2, 1, true},       // 3x3 stride 2, bias
      {1, 96, 14, 14, 3, 1, 1},           // batch 1
      {2, 144, 7, 7, 3, 2, 1},            // odd size, stride 2
      {2, 32, 7, 10, 3, 2, 1},            // not square
      {2, 200, 5, 5, 3, 1, 1, true},      // four channel slices, the last narrower
      {2, 40, 10, 10, 5, 2, 2, true},     // 5x5 stride 2 (25 taps: three tap slices for dw)
      {2, 8, 5, 6, 1, 1, 0},              // 1x1
      {8, 16, 32, 32, 3, 1, 1},           // several pixel chunks in every kernel
      {2, 3, 8, 8, 3, 1, 1},              // the scalar path (C % 8 != 0)
      {3, 20, 11, 11, 5, 2, 2},           // scalar 5x5 stride 2
      {4, 20, 24, 24, 3, 1, 1},           // scalar, several chunks
      {1, 130, 6, 6, 3, 2, 1, true},      // scalar, three channel slices, batch 1
      {2, 16, 9, 9, 3, 1, 1, false, 1},   // C % 8 == 0 but x misaligned: the scalar path
  };
  for (const Case& k : cases) check_case(k);
}

TEST_CASE("relu6 on bf16 activations on the GPU is the f32 rule on the widened values, and keeps NHWC bf16") {
  // Values across both kinks and beyond them, with 0 and 6 exactly; an odd count (the kernels'
  // scalar tail) and a 4-D NHWC activation.
  for (const Shape& shape : {Shape{1001}, Shape{2, 5, 7, 24}}) {
    INFO("shape " << shape_str(shape));
    Tensor x32 = testing::random_tensor(shape, 71, -8.f, 8.f);
    x32.data<float>()[0] = 0.f;
    x32.data<float>()[1] = 6.f;
    x32.data<float>()[2] = -0.f;
    const Tensor x16 = packed::to_bf16(x32), g16 = packed::to_bf16(testing::random_tensor(shape, 72));
    const Tensor y = ops::relu6_forward(x16.cuda()), gx = ops::relu6_backward(g16.cuda(), x16.cuda());
    REQUIRE(y.dtype() == DType::BF16);
    REQUIRE(gx.dtype() == DType::BF16);
    const std::vector<float> xv = packed::to_f32(x16).to_vector(), gv = packed::to_f32(g16).to_vector();
    std::vector<float> y_want(xv.size()), g_want(xv.size());
    for (size_t i = 0; i < xv.size(); ++i) {
      y_want[i] = bf16_to_float(float_to_bf16(kernels::activation_value(kernels::Activation::ReLU6, xv[i])));
      g_want[i] = bf16_to_float(float_to_bf16(kernels::activation_grad(kernels::Activation::ReLU6, gv[i], xv[i])));
    }
    REQUIRE(testing::bits(widened(y)) == testing::bits(Tensor::from_vector(y_want, shape)));
    REQUIRE(testing::bits(widened(gx)) == testing::bits(Tensor::from_vector(g_want, shape)));
  }
  // Through autograd: NHWC bf16 in, NHWC bf16 out, the gradient NHWC bf16 too.
  const Tensor x = ops::to_nhwc_bf16(testing::random_tensor({2, 8, 3, 3}, 73, -8.f, 8.f)).cuda();
  Var xv(x, true);
  Var y = nn::relu6(xv);
  REQUIRE(ops::is_nhwc_bf16(y.value()));
  REQUIRE(y.value().is_cuda());
  backward(nn::sum(nn::to_nchw_f32(y)));
  REQUIRE(ops::is_nhwc_bf16(xv.grad()));
}

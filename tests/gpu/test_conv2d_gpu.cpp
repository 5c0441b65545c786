// 2-D convolution on the GPU (cuDNN) against the CPU reference: forward and the three backward
// pieces over a sweep of shapes, under FP32 (FMA math) and TF32; the Conv2d layer moved to CUDA.
//
// Tolerance: |gpu - cpu| <= tol * (rms(cpu) + |cpu|) elementwise, so it is relative to the size
// of the outputs (a sum of K products has magnitude ~sqrt(K)/3 for inputs in [-1, 1]).
// FP32 tol 1e-4: different summation orders and Winograd/FFT transforms stay near 1e-6, while a
// TF32 result (10-bit mantissa, errors ~5e-4) would fail, so this also checks that FP32 really
// is FMA math. TF32 tol 1e-2.
#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "engine/nn/conv2d.h"
#include "engine/nn/functional.h"
#include "engine/ops/conv2d.h"
#include "engine/precision.h"
#include "tests/support/testing.h"

using namespace mdq;
using ops::Conv2dParams;

namespace {

struct Case {
  int64_t N, C, H, W, O, K;
  Conv2dParams p;
  std::string str() const {
    std::ostringstream s;
    s << "x [" << N << ", " << C << ", " << H << ", " << W << "] O " << O << " kernel " << K << " stride " << p.stride
      << " padding " << p.padding << " groups " << p.groups;
    return s.str();
  }
};

std::vector<Case> sweep() {
  std::vector<Case> cases;
  for (int64_t N : {1, 3})
    for (auto [C, O, groups] : {std::tuple<int64_t, int64_t, int64_t>{4, 6, 1}, {4, 6, 2}, {5, 5, 5}})
      for (auto [stride, padding] : {std::pair<int64_t, int64_t>{1, 0}, {1, 1}, {2, 0}, {2, 1}})
        cases.push_back({N, C, 7, 9, O, 3, {stride, padding, groups}});
  cases.push_back({3, 3, 11, 11, 8, 5, {2, 2, 1}});       // 5x5 kernel, stem-like
  cases.push_back({2, 16, 15, 13, 24, 1, {1, 0, 1}});     // 1x1 projection
  cases.push_back({2, 16, 16, 16, 32, 1, {2, 0, 1}});     // ResNet downsample shortcut
  cases.push_back({3, 32, 17, 17, 32, 3, {1, 1, 1}});     // wider, odd
  cases.push_back({3, 32, 17, 17, 32, 3, {2, 1, 32}});    // depthwise stride 2 (MobileNetV2)
  return cases;
}

float rms(const Tensor& t) {
  double s = 0;
  for (float v : t.to_vector()) s += double(v) * v;
  return static_cast<float>(std::sqrt(s / std::max<int64_t>(1, t.numel())));
}

void require_close_rel(const Tensor& gpu, const Tensor& cpu, float tol, const std::string& what) {
  testing::require_close(gpu, cpu, tol * rms(cpu), tol, what);
}

// The ops allocate their own outputs, so poison what they will most likely get: a freed NaN
// block of the output's size waits in the caching allocator, and an element the op forgets to
// write stays NaN and fails the comparison.
void poison_next(const Shape& shape) {
  Tensor t = Tensor::empty(shape, DType::F32, Device::CUDA);
  testing::poison(t);
}

struct PrecisionScope {
  Precision saved = precision();
  explicit PrecisionScope(Precision p) { set_precision(p); }
  ~PrecisionScope() { set_precision(saved); }
};

void check_case(const Case& c, uint64_t seed, float tol) {
  const std::string what = c.str() + " precision " + precision_name(precision());
  INFO(what);
  Tensor x = testing::random_tensor({c.N, c.C, c.H, c.W}, seed);
  Tensor w = testing::random_tensor({c.O, c.C / c.p.groups, c.K, c.K}, seed + 1);
  Tensor b = testing::random_tensor({c.O}, seed + 2);
  const Shape ys = ops::conv2d_output_shape(x.shape(), w.shape(), c.p);
  Tensor dy = testing::random_tensor(ys, seed + 3);
  Tensor gx = x.cuda(), gw = w.cuda(), gb = b.cuda(), gdy = dy.cuda();

  Tensor y = ops::conv2d_forward(x, w, b, c.p);
  Tensor dx = ops::conv2d_backward_input(dy, w, x.shape(), c.p);
  Tensor dw = ops::conv2d_backward_weight(dy, x, w.shape(), c.p);
  Tensor db = ops::conv2d_backward_bias(dy);

  // First calls search for algorithms; the second calls run the cached plan on poisoned memory.
  Tensor gy1 = ops::conv2d_forward(gx, gw, gb, c.p);
  ops::conv2d_backward_input(gdy, gw, x.shape(), c.p);
  ops::conv2d_backward_weight(gdy, gx, w.shape(), c.p);
  poison_next(ys);
  Tensor gy = ops::conv2d_forward(gx, gw, gb, c.p);
  poison_next(x.shape());
  Tensor gdx = ops::conv2d_backward_input(gdy, gw, x.shape(), c.p);
  poison_next(w.shape());
  Tensor gdw = ops::conv2d_backward_weight(gdy, gx, w.shape(), c.p);
  poison_next({c.O});
  Tensor gdb = ops::conv2d_backward_bias(gdy);

  require_close_rel(gy, y, tol, what + ": forward");
  require_close_rel(gdx, dx, tol, what + ": backward_input");
  require_close_rel(gdw, dw, tol, what + ": backward_weight");
  require_close_rel(gdb, db, tol, what + ": backward_bias");
  REQUIRE(gy1.to_vector() == gy.to_vector());  // same plan, same algorithm: same bits
  // Without bias the forward is the same minus the bias.
  require_close_rel(ops::conv2d_forward(gx, gw, Tensor(), c.p), ops::conv2d_forward(x, w, Tensor(), c.p), tol,
                    what + ": forward without bias");
}

}  // namespace

TEST_CASE("cuDNN conv2d matches the CPU reference under FP32 (FMA math), tol 1e-4") {
  PrecisionScope fp32(Precision::FP32);
  uint64_t seed = 1000;
  for (const Case& c : sweep()) check_case(c, seed += 10, 1e-4f);
#ifdef MDQ_HAS_CUDA
  // The cache recorded one algorithm per direction, with FMA math (cudnnMathType_t 3).
  const Case& c = sweep().back();
  auto ch = ops::cudnn_conv::choices({c.N, c.C, c.H, c.W}, {c.O, c.C / c.p.groups, c.K, c.K}, c.p);
  REQUIRE(ch.forward.algo >= 0);
  REQUIRE(ch.backward_data.algo >= 0);
  REQUIRE(ch.backward_filter.algo >= 0);
  REQUIRE(ch.forward.math_type == 3);
#endif
}

TEST_CASE("cuDNN conv2d matches the CPU reference under TF32, tol 1e-2") {
  PrecisionScope tf32(Precision::TF32);
  uint64_t seed = 5000;
  for (const Case& c : sweep()) check_case(c, seed += 10, 1e-2f);
}

TEST_CASE("Conv2d layer on CUDA: forward and parameter grads match the CPU") {
  PrecisionScope fp32(Precision::FP32);
  nn::Conv2d cpu(8, 12, 3, 2, 1, 4, true, 7), gpu(8, 12, 3, 2, 1, 4, true, 7);
  gpu.to(Device::CUDA);
  Tensor x = testing::random_tensor({3, 8, 9, 9}, 77);
  Var xc(x, true), xg(x.cuda(), true);
  // One graph at a time: backward replays and then clears the whole tape.
  Var yc = cpu(xc);
  Var r(testing::random_tensor(yc.shape(), 78));
  backward(nn::sum(nn::mul(yc, r)));
  Var yg = gpu(xg);
  backward(nn::sum(nn::mul(yg, Var(r.value().cuda()))));
  require_close_rel(yg.value(), yc.value(), 1e-4f, "Conv2d forward");
  require_close_rel(xg.grad(), xc.grad(), 1e-4f, "Conv2d grad x");
  require_close_rel(gpu.weight().grad(), cpu.weight().grad(), 1e-4f, "Conv2d grad weight");
  require_close_rel(gpu.bias().grad(), cpu.bias().grad(), 1e-4f, "Conv2d grad bias");
  REQUIRE(gpu.weight().value().is_cuda());
}

TEST_CASE("cuDNN conv2d: mixing devices is an error that names both operands") {
  Tensor x = Tensor::zeros({1, 2, 5, 5}, DType::F32, Device::CUDA), w = Tensor::zeros({3, 2, 3, 3});
  REQUIRE_THROWS_WITH(ops::conv2d_forward(x, w, Tensor(), {}),
                      Catch::Contains("f32[1, 2, 5, 5]@cuda") && Catch::Contains("f32[3, 2, 3, 3]@cpu"));
  REQUIRE_THROWS_WITH(ops::conv2d_forward(x, w.cuda(), Tensor::zeros({3}), {}),
                      Catch::Contains("conv2d_forward") && Catch::Contains("f32[3]@cpu"));
}

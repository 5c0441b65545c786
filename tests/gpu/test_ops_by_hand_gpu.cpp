// What the GPU backend must do beyond matching the CPU (that is the op table's,
// tests/gpu/test_ops_gpu.cpp): errors for mixed devices and bad labels raised from the device,
// deferred label checks, the cross-entropy probabilities written in place, cuDNN's recorded
// choices under FP32, and views that stay on the device.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/bf16.h"
#include "engine/nn/conv2d.h"
#include "engine/nn/functional.h"
#include "engine/nn/reshape.h"
#include "engine/ops/conv2d.h"
#include "engine/ops/layout.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/loss.h"
#include "tests/support/precision_scope.h"
#include "tests/support/testing.h"

using namespace mdq;

namespace {

using testing::bits;

Tensor random_labels(int64_t n, int64_t k, uint64_t seed) { return testing::random_labels(n, k, seed).cuda(); }

}  // namespace

TEST_CASE("mixing devices is an error that names both operands") {
  Tensor a = Tensor::zeros({3}), b = Tensor::zeros({3}, DType::F32, Device::CUDA);
  REQUIRE_THROWS_WITH(ops::add(a, b), Catch::Contains("f32[3]@cpu") && Catch::Contains("f32[3]@cuda"));
}

TEST_CASE("cuDNN conv2d: mixing devices is an error that names both operands") {
  Tensor x = Tensor::zeros({1, 2, 5, 5}, DType::F32, Device::CUDA), w = Tensor::zeros({3, 2, 3, 3});
  REQUIRE_THROWS_WITH(ops::conv2d_forward(x, w, Tensor(), {}),
                      Catch::Contains("f32[1, 2, 5, 5]@cuda") && Catch::Contains("f32[3, 2, 3, 3]@cpu"));
  REQUIRE_THROWS_WITH(ops::conv2d_forward(x, w.cuda(), Tensor::zeros({3}), {}),
                      Catch::Contains("conv2d_forward") && Catch::Contains("f32[3]@cpu"));
}

TEST_CASE("cuDNN conv2d under FP32 records one algorithm per direction, with FMA math") {
  testing::PrecisionScope fp32(Precision::FP32);
  const ops::Conv2dParams p{2, 1, 32};  // depthwise stride 2 (MobileNetV2)
  Tensor x = testing::random_tensor({3, 32, 17, 17}, 1, -1.f, 1.f, Device::CUDA);
  Tensor w = testing::random_tensor({32, 1, 3, 3}, 2, -1.f, 1.f, Device::CUDA);
  Tensor dy = testing::random_tensor(ops::conv2d_output_shape(x.shape(), w.shape(), p), 3, -1.f, 1.f, Device::CUDA);
  ops::conv2d_forward(x, w, Tensor(), p);
  ops::conv2d_backward_input(dy, w, x.shape(), p);
  ops::conv2d_backward_weight(dy, x, w.shape(), p);
#ifdef MDQ_HAS_CUDA
  auto ch = ops::cudnn_conv::choices(x.shape(), w.shape(), p);
  CHECK(ch.forward.algo >= 0);
  CHECK(ch.backward_data.algo >= 0);
  CHECK(ch.backward_filter.algo >= 0);
  CHECK(ch.forward.math_type == 3);  // CUDNN_FMA_MATH: true fp32, no tensor cores
#endif
}

// A ResNet-18 3x3 layer at a smaller batch on the GPU: input, weight and an output gradient.
struct Resnet3x3 {
  ops::Conv2dParams p{1, 1, 1};
  Tensor x, w, dy;
  explicit Resnet3x3(uint64_t seed)
      : x(testing::random_tensor({8, 64, 16, 16}, seed, -1.f, 1.f, Device::CUDA)),
        w(testing::random_tensor({64, 64, 3, 3}, seed + 1, -1.f, 1.f, Device::CUDA)),
        dy(testing::random_tensor({8, 64, 16, 16}, seed + 2, -1.f, 1.f, Device::CUDA)) {}
};

TEST_CASE("cuDNN conv2d under BF16 runs on bf16 copies with tensor-core math in all three directions") {
  testing::PrecisionScope bf16(Precision::BF16);
  const Resnet3x3 l(4);
  const Tensor &x = l.x, &w = l.w, &dy = l.dy;
  const ops::Conv2dParams p = l.p;
  ops::conv2d_forward(x, w, Tensor(), p);
  ops::Conv2dGrads g = ops::conv2d_backward(dy, x, w, p, true, true);
  REQUIRE(g.input.shape() == x.shape());
  REQUIRE(g.weight.shape() == w.shape());
#ifdef MDQ_HAS_CUDA
  auto ch = ops::cudnn_conv::choices(x.shape(), w.shape(), p);
  CHECK(ch.bf16);
  // Not CUDNN_FMA_MATH (3): on bf16 operands DEFAULT (0) and TENSOR_OP (1) both run tensor cores.
  for (const auto* c : {&ch.forward, &ch.backward_data, &ch.backward_filter}) {
    CHECK(c->algo >= 0);
    CHECK((c->math_type == 0 || c->math_type == 1));
  }
  // Depthwise stays on the f32 tensors (kernels/conv2d.cu, bf16_fits).
  CHECK_FALSE(ops::cudnn_conv::choices({8, 64, 16, 16}, {64, 1, 3, 3}, {1, 1, 64}).bf16);
#endif
}

TEST_CASE("nn::conv2d under BF16 answers in NHWC bf16 with the op's values and gradients bit for bit") {
  testing::PrecisionScope bf16(Precision::BF16);
  const Resnet3x3 l(14);
  const Tensor &x = l.x, &w = l.w, &dy = l.dy;
  const ops::Conv2dParams p = l.p;
  // The op on NCHW f32 converts its operands to NHWC bf16 for cuDNN; nn::conv2d's activations are
  // NHWC bf16 already (engine/ops/layout.h) and its backward reads that bf16 x: the same
  // roundings and the same cuDNN plans, so the same bits.
  const Tensor y_op = ops::conv2d_forward(x, w, Tensor(), p);
  const ops::Conv2dGrads g_op = ops::conv2d_backward(dy, x, w, p, true, true);
  Var xv(x, true), wv(w, true);
  Var y = nn::conv2d(xv, wv, Var(), p);
  REQUIRE(ops::is_nhwc_bf16(y.value()));
  REQUIRE(bits(ops::to_nchw_f32(y.value())) == bits(y_op));
  backward(nn::sum(nn::mul(y, Var(dy))));
  REQUIRE(bits(wv.grad()) == bits(g_op.weight));
  REQUIRE(bits(xv.grad()) == bits(g_op.input));
}

TEST_CASE("cross-entropy on the GPU writes its probabilities in place and keeps the loss on the device") {
  Tensor logits = testing::random_tensor({37, 7}, 7, -8.f, 8.f, Device::CUDA);
  Tensor probs = Tensor::empty({37, 7}, DType::F32, Device::CUDA);
  void* before = probs.raw();
  Tensor loss = ops::cross_entropy_forward(logits, random_labels(37, 7, 8), &probs);
  REQUIRE(probs.raw() == before);
  REQUIRE(loss.is_cuda());
}

TEST_CASE("a bad label on the GPU throws with its index and value, and the next call is clean") {
  Tensor logits = testing::random_tensor({300, 10}, 11, -1.f, 1.f, Device::CUDA);
  std::vector<int32_t> v(300, 3);
  v[250] = 10;
  v[117] = -1;  // the first bad row is the one reported
  Tensor bad = Tensor::from_vector_i32(v, {300}, Device::CUDA);
  REQUIRE_THROWS_WITH(ops::cross_entropy_forward(logits, bad, nullptr),
                      Catch::Contains("cross_entropy") && Catch::Contains("label -1 at index 117") &&
                          Catch::Contains("K = 10"));
  REQUIRE_THROWS_WITH(ops::count_topk_correct(logits, bad, 5),
                      Catch::Contains("count_topk_correct") && Catch::Contains("label -1 at index 117"));
  Tensor good = random_labels(300, 10, 12);
  REQUIRE(std::isfinite(ops::cross_entropy_forward(logits, good, nullptr).item()));
  REQUIRE(ops::count_topk_correct(logits, good, 10) == 300);
  v[117] = 3;
  REQUIRE_THROWS_WITH(ops::cross_entropy_forward(logits, Tensor::from_vector_i32(v, {300}, Device::CUDA), nullptr),
                      Catch::Contains("label 10 at index 250"));
}

TEST_CASE("deferred label checks report a bad label at the next check, without a sync per call") {
  ops::set_deferred_label_checks(true);
  Tensor logits = testing::random_tensor({64, 10}, 13, -1.f, 1.f, Device::CUDA);
  std::vector<int32_t> v(64, 2);
  v[40] = 12;
  Tensor good = random_labels(64, 10, 14);
  ops::cross_entropy_forward(logits, good, nullptr);
  ops::check_pending_label_errors();  // clean
  ops::cross_entropy_forward(logits, Tensor::from_vector_i32(v, {64}, Device::CUDA), nullptr);  // no throw yet
  REQUIRE_THROWS_WITH(ops::check_pending_label_errors(), Catch::Contains("label 12 at index 40"));
  ops::check_pending_label_errors();  // reported once
  ops::cross_entropy_forward(logits, Tensor::from_vector_i32(v, {64}, Device::CUDA), nullptr);
  REQUIRE_THROWS_WITH(ops::cross_entropy_forward(logits, good, nullptr), Catch::Contains("label 12 at index 40"));
  ops::set_deferred_label_checks(false);
}

TEST_CASE("flatten of a GPU tensor keeps it on the GPU and shares storage") {
  Var x(testing::random_tensor({4, 2, 3, 3}, 1, -1.f, 1.f, Device::CUDA), true);
  Var f = nn::flatten(x);
  REQUIRE(f.value().describe() == "f32[4, 18]@cuda");
  REQUIRE(f.value().raw() == x.value().raw());
}

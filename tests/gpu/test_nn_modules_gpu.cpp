// The layer classes moved to the GPU (Module::to) against their CPU twins: Conv2d's forward
// and parameter grads, BatchNorm2d's outputs, grads and running stats in training and eval.
// Bounds as in the op table (tests/ops): conv relative to the output's rms, batch norm 1e-4.
#include "engine/nn/batchnorm.h"
#include "engine/nn/conv2d.h"
#include "engine/nn/functional.h"
#include "tests/support/grad_sum_check.h"
#include "tests/support/precision_scope.h"
#include "tests/support/testing.h"

using namespace mdq;

namespace {

void require_close_rel(const Tensor& gpu, const Tensor& cpu, float tol, const std::string& what) {
  testing::require_close(gpu, cpu, testing::Bound{0, tol, tol}, what);
}

using testing::PrecisionScope;

}  // namespace

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

TEST_CASE("BatchNorm2d on the GPU trains and evaluates like its CPU twin") {
  nn::BatchNorm2d cpu(3, true), gpu(3, true);
  gpu.to(Device::CUDA);
  for (bool training : {true, false}) {
    cpu.train(training);
    gpu.train(training);
    Tensor x = Tensor::normal({4, 3, 5, 7}, 0.5f, 1.5f, 910 + training);
    Tensor weights = testing::random_tensor(x.shape(), 911);
    // One forward and backward at a time: backward replays and then clears the whole tape.
    Var xc(x, true), xg(x.cuda(), true);
    Var yc = cpu(xc);
    backward(nn::sum(nn::mul(yc, Var(weights))));
    Var yg = gpu(xg);
    backward(nn::sum(nn::mul(yg, Var(weights.cuda()))));
    testing::require_close(yg.value(), yc.value(), 1e-4f, 1e-4f,
                           training ? "module out, training" : "module out, eval");
    testing::require_close(xg.grad(), xc.grad(), 1e-4f, 1e-4f, "module grad_input");
    auto pc = cpu.parameters(), pg = gpu.parameters();
    for (size_t i = 0; i < pc.size(); ++i) {
      testing::require_close(pg[i].var.grad(), pc[i].var.grad(), 1e-3f, 1e-4f, "module grad of " + pc[i].name);
      pc[i].var.zero_grad();
      pg[i].var.zero_grad();
    }
    testing::require_close(gpu.running_mean(), cpu.running_mean(), 1e-5f, 1e-5f, "module running_mean");
    testing::require_close(gpu.running_var(), cpu.running_var(), 1e-5f, 1e-5f, "module running_var");
  }
}

TEST_CASE("gradients summed on the GPU: conv2d adds its input gradient in place, shared ones stay apart") {
  for (Precision prec : {Precision::FP32, Precision::TF32, Precision::BF16}) {
    DYNAMIC_SECTION(precision_name(prec)) {
      PrecisionScope scope(prec);
      testing::check_conv_grad_sum(Device::CUDA);
    }
  }
  testing::check_shared_grads_stay_apart(Device::CUDA);
}

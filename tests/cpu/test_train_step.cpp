// TrainStep (engine/train_step.h) on the CPU, where it always runs eagerly: one run() equals the
// step written out by hand (forward, cross-entropy, backward, quantizer step, zero_grad) bit for
// bit, the hook runs once per step between backward and the quantizer's step, and nothing is ever
// captured. The GPU's capture and replay are checked in tests/gpu/test_train_step_gpu.cpp.
#include <memory>
#include <vector>

#include "engine/nn/loss.h"
#include "engine/train_step.h"
#include "models/model_zoo.h"
#include "tests/support/testing.h"

using namespace mdq;

namespace {

std::shared_ptr<nn::Module> small_model() {
  models::ModelOptions mo;
  mo.in_channels = 1;
  mo.image_size = 16;
  mo.seed = 9;
  auto m = models::make_model("smallcnn", mo);
  m->train();
  return m;
}

}  // namespace

TEST_CASE("TrainStep on the CPU is the eager step, bit for bit, and never captures") {
  auto by_hand = small_model(), stepped = small_model();
  quant::QuantConfig qc;
  qc.interval = 1;  // β changes every step
  quant::Quantizer q_hand(by_hand->parameters(), qc), q_step(stepped->parameters(), qc);
  int hook_calls = 0;
  TrainStepOptions so;
  so.after_backward = [&] {
    ++hook_calls;
    for (const nn::ParamRef& p : stepped->parameters()) REQUIRE(p.var.has_grad());  // after backward
  };
  TrainStep step(*stepped, q_step, so);
  for (int k = 0; k < 4; ++k) {
    const Tensor images = testing::random_tensor({6, 1, 16, 16}, 30 + k);
    const Tensor labels = testing::random_labels(6, 10, 50 + k);
    Var loss = nn::cross_entropy(by_hand->forward(Var(images)), labels);
    backward(loss);
    q_hand.step(1e-2f);
    q_hand.zero_grad();
    step.run(images, labels, 1e-2f);
    REQUIRE(testing::bits(step.loss()) == testing::bits(loss.value()));
    REQUIRE(step.labels().numel() == 6);
    REQUIRE(step.logits().shape() == Shape{6, 10});
    REQUIRE_FALSE(step.graphed());
  }
  REQUIRE(hook_calls == 4);
  for (const nn::ParamRef& p : stepped->parameters()) REQUIRE_FALSE(p.var.has_grad());  // zero_grad ran
  const auto ph = by_hand->parameters(), ps = stepped->parameters();
  for (size_t i = 0; i < ph.size(); ++i) REQUIRE(testing::bits(ps[i].var.value()) == testing::bits(ph[i].var.value()));
  REQUIRE(q_step.state_metadata() == q_hand.state_metadata());
}

TEST_CASE("TrainStep says why it runs eagerly") {
  auto model = small_model();
  quant::Quantizer q(model->parameters(), quant::QuantConfig{});
  TrainStepOptions off;
  off.cuda_graph = false;
  REQUIRE(TrainStep(*model, q, off).eager_reason() == "CUDA graph turned off");
  TrainStepOptions told;
  told.eager_reason = "the caller says so";
  REQUIRE(TrainStep(*model, q, told).eager_reason() == told.eager_reason);
  REQUIRE(TrainStep(*model, q, TrainStepOptions{}).eager_reason().empty());
}

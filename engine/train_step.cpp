// TrainStep (engine/train_step.h): the eager step, its capture and its replays.
#include "engine/train_step.h"

#include "engine/nn/loss.h"
#include "engine/ops/loss.h"
#include "engine/storage.h"

namespace mdq {

TrainStep::TrainStep(nn::Module& model, quant::Quantizer& quantizer, TrainStepOptions options)
    : model_(model), quantizer_(quantizer), options_(std::move(options)) {
  if (!options_.cuda_graph) eager_reason_ = "CUDA graph turned off";
  else eager_reason_ = options_.eager_reason;
}

void TrainStep::queue(const Tensor& images, const Tensor& labels, float lr, Var& logits, Var& loss) {
  logits = model_.forward(Var(images));
  loss = nn::cross_entropy(logits, labels);
  backward(loss);
  if (options_.after_backward) options_.after_backward();
  quantizer_.step(lr);
  quantizer_.zero_grad();
}

void TrainStep::eager(const Tensor& images, const Tensor& labels, float lr) {
  labels_ = labels;
  queue(images, labels, lr, logits_, loss_);
}

void TrainStep::capture(const Tensor& images, const Tensor& labels, float lr) {
  static_images_ = images.clone();
  static_labels_ = labels.clone();
  loss_ = logits_ = Var();
  // The graph's pool takes new blocks from the driver: give back what the eager steps cached.
  cuda_allocator_release_cache();
  try {
    graph_.capture([&] { queue(static_images_, static_labels_, lr, graph_logits_, graph_loss_); });
  } catch (const std::exception& e) {
    clear_tape();
    MDQ_FAIL("capturing the training step as a CUDA graph failed: " << e.what()
             << ". The quantizer may have counted a step that did not run: start again (or --resume) "
                "with --cuda-graph false");
  }
  graph_.replay();  // the captured step itself
  replayed();
}

void TrainStep::replayed() {
  if (options_.after_replay) options_.after_replay();
  loss_ = graph_loss_;
  logits_ = graph_logits_;
  labels_ = static_labels_;
  ops::check_captured_labels();
}

void TrainStep::run(const Tensor& images, const Tensor& labels, float lr) {
  const bool can_graph = images.is_cuda() && eager_reason_.empty();
  if (graph_.captured() && images.shape() == static_images_.shape() && labels.shape() == static_labels_.shape()) {
    static_images_.copy_from(images);
    static_labels_.copy_from(labels);
    quantizer_.step_replayed(lr, graph_);
    graph_.replay();
    replayed();
    return;
  }
  if (!can_graph || graph_.captured() || eager_steps_ < options_.warmup) {
    eager(images, labels, lr);
    ++eager_steps_;
    return;
  }
  if (!quantizer_.last_step_took_all()) {  // a parameter without a grad: the captured groups would not hold
    eager_reason_ = "a parameter got no gradient in the last step";
    eager(images, labels, lr);
    return;
  }
  capture(images, labels, lr);
}

}  // namespace mdq

// One training step of a classifier, as mdq-train and bench_train_step run it: forward, the
// cross-entropy loss, backward, an optional hook (the data-parallel gradient mean), the
// quantizer's step (E6–E10 with the E8 direction) and zero_grad. The hook is captured with the
// step (the NCCL gradient means can be: docs/DESIGN.md, "One training step").
//
// On the GPU the step is captured as a CUDA graph (engine/cuda_graph.h) after a few eager steps
// and replayed from then on: one launch per step instead of one per kernel (about 400 for
// ResNet-18), so the host no longer paces the GPU. A replayed step computes exactly what the eager
// step computes (the same kernels with the same arguments; tests/gpu/test_train_step_gpu.cpp
// checks it bit for bit), so a run, and its --resume, do not depend on where the capture happened.
//
//   TrainStep step(model, quantizer);
//   loop: step.run(batch.images, batch.labels, lr); ... step.loss().item() ...
#pragma once
#include <functional>
#include <string>

#include "engine/autograd.h"
#include "engine/cuda_graph.h"
#include "engine/nn/module.h"
#include "engine/quant/quantizer.h"

namespace mdq {

struct TrainStepOptions {
  bool cuda_graph = true;  // capture on the GPU (the CPU always runs eagerly)
  // Eager steps before the capture: the first one searches cuDNN's algorithms and fills the
  // allocator's cache and the MD update's device table, which a capture cannot do.
  int warmup = 2;
  // Runs between backward and the quantizer step (the data-parallel gradient mean); captured with
  // the step, so it must queue GPU work only (the NCCL path does: its side stream joins the capture).
  std::function<void()> after_backward;
  // Runs after each replay (the NCCL communicator's watch_replay: its watchdog cannot wait on the
  // captured collectives one by one).
  std::function<void()> after_replay;
  // When not empty, the step runs eagerly and this says why (for the run's log).
  std::string eager_reason;
};

class TrainStep {
 public:
  TrainStep(nn::Module& model, quant::Quantizer& quantizer, TrainStepOptions options = {});

  // One step on this batch (images and labels on the model's device) at learning rate lr. A
  // batch whose shape differs from the captured one runs eagerly. Throws when the capture fails,
  // naming CUDA's error (a run can then go on with TrainStepOptions::cuda_graph off).
  void run(const Tensor& images, const Tensor& labels, float lr);

  // The last step's loss (one element), logits and labels, on the device; valid until run().
  const Tensor& loss() const { return loss_.value(); }
  const Tensor& logits() const { return logits_.value(); }
  const Tensor& labels() const { return labels_; }
  bool graphed() const { return graph_.captured(); }  // are steps replayed from a graph now?
  // Why the steps run eagerly, or "" when they are (or will be) replayed: for the run's log.
  const std::string& eager_reason() const { return eager_reason_; }

 private:
  // The step's work, queued on the stream (eagerly, or recorded when a capture runs).
  void queue(const Tensor& images, const Tensor& labels, float lr, Var& logits, Var& loss);
  void eager(const Tensor& images, const Tensor& labels, float lr);
  void capture(const Tensor& images, const Tensor& labels, float lr);
  void replayed();  // after a replay: the graph's outputs are the last step's

  nn::Module& model_;
  quant::Quantizer& quantizer_;
  TrainStepOptions options_;
  Var loss_, logits_;
  Tensor labels_;
  Tensor static_images_, static_labels_;  // what the graph reads: each batch is copied in
  Var graph_loss_, graph_logits_;         // what it writes
  CudaGraph graph_;
  int eager_steps_ = 0;
  std::string eager_reason_;
};

}  // namespace mdq

// Data-parallel gradients: the mean over all ranks of every parameter's grad, reduced in buckets
// (grad_buckets.h) that start while backward is still running.
//
// Each parameter's Var gets a grad hook (autograd.h). A bucket is ready when each of its
// parameters has received as many gradient contributions as in the first step (which learns the
// counts and starts every bucket at its end, as PyTorch DDP's first iteration does). Ready buckets
// start strictly in layout order, so every rank queues the same collectives in the same order. A
// started bucket packs its grads into a flat buffer and starts the mean (GPU: NCCL on a side
// stream, overlapping the rest of backward; no host wait). finish() starts what is left, orders
// the means before the optimizer and makes each grad a window of its bucket (Tensor::window), so
// the means are not copied back.
//
//   GradReducer r(model.parameters(), comm);
//   loop: forward; backward(loss); r.finish(); quantizer.step(lr); quantizer.zero_grad();
#pragma once
#include <cstdint>
#include <vector>

#include "engine/dist/communicator.h"
#include "engine/dist/grad_buckets.h"
#include "engine/nn/module.h"
#include "engine/ops/copy_spans.h"

namespace mdq::dist {

struct BucketCaps {
  size_t cap_bytes = 25u << 20;       // PyTorch DDP's defaults
  size_t first_cap_bytes = 1u << 20;
};

class GradReducer {
 public:
  GradReducer(std::vector<nn::ParamRef> params, Communicator& comm, BucketCaps caps = {});
  ~GradReducer();  // removes the hooks
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  // After backward(): every parameter's grad becomes the mean over ranks. Throws when a parameter
  // got no gradient, or a different number of contributions than in the first step (every rank
  // must use every parameter in every step).
  void finish();

  const BucketLayout& layout() const { return layout_; }
  // Buckets of the last finished step that started during backward (the others at finish()).
  int64_t started_during_backward() const { return started_during_backward_; }

 private:
  void on_grad(size_t param);
  void start_ready();
  void start(size_t bucket);  // packs the bucket's grads into its flat buffer, starts the mean
  float* grad_data(size_t param) const;

  std::vector<nn::ParamRef> params_;
  Communicator& comm_;
  BucketLayout layout_;
  std::vector<Tensor> flat_;          // one buffer per bucket, on comm.device()
  std::vector<int64_t> expected_;     // contributions per parameter per step (learned in step 1)
  std::vector<int64_t> count_;        // contributions so far this step
  std::vector<size_t> ready_;         // complete parameters per bucket this step
  size_t next_ = 0;                   // the next bucket to start
  std::vector<ops::CopySpan> spans_;  // the copies into the bucket being started
  bool calibrated_ = false;
  int64_t started_during_backward_ = 0;
};

}  // namespace mdq::dist

// An inference forward replayed from a CUDA graph (engine/cuda_graph.h): mdq-infer's batches.
//
// A forward of ResNet-18 queues about 40 kernels (the packed plan) to 100 (the float engine); at
// batch 256 the host's launches are a few percent of the GPU time, at batch 1 most of it. Replaying
// the recorded forward takes one launch. The replay runs the same kernels with the same arguments,
// so its logits equal the eager forward's bit for bit.
//
//   GraphedForward fwd([&](const Tensor& x) { return plan->logits(x); });
//   Tensor logits = fwd(images);  // eager twice per shape, then captured and replayed
//
// The first `warmup` calls run eagerly (cuDNN's algorithm search and the allocator's first
// allocations cannot be captured); the next call copies its input into a buffer of the graph's,
// records the forward on that buffer and replays it. From then on a call of that shape copies its
// input into the buffer and replays (a caller that writes its batches into input() itself saves
// the copy); a call of another shape (the last, smaller batch of a split) runs eagerly. Each call
// returns its own logits: a later replay does not overwrite them. When the capture fails (the
// forward synchronises with the host, say), every call runs eagerly and why() says so. Tensors on
// the CPU always run eagerly.
#pragma once
#include <functional>
#include <string>

#include "engine/cuda_graph.h"
#include "engine/tensor.h"

namespace mdq {

class GraphedForward {
 public:
  using Forward = std::function<Tensor(const Tensor&)>;
  // A non-empty eager_reason runs every call eagerly (why() gives the reason).
  explicit GraphedForward(Forward forward, std::string eager_reason = "", int warmup = 2);

  Tensor operator()(const Tensor& x);

  bool replaying() const { return graph_.captured(); }
  // The buffer the graph reads (undefined before the capture): passing it in replays with no copy.
  const Tensor& input() const { return input_; }
  // What the calls do, for the run's log: "replayed from a CUDA graph after 2 eager batches",
  // "eager: <reason>", or "eager so far (...)" before the capture.
  std::string why() const;

 private:
  CudaGraph graph_;  // declared first: destroyed last, after the tensors from its pool
  Forward forward_;
  int warmup_;
  std::string eager_reason_;  // not empty: every call runs eagerly from now on
  Shape eager_shape_;         // the shape the eager calls so far ran on
  int eager_runs_ = 0;        // calls of eager_shape_ so far
  Tensor input_, output_;     // what the graph reads and writes
};

}  // namespace mdq

// GraphedForward (engine/graphed_forward.h): eager warm-up, capture, replays.
#include "engine/graphed_forward.h"

#include <exception>

#include "engine/storage.h"

namespace mdq {

GraphedForward::GraphedForward(Forward forward, std::string eager_reason, int warmup)
    : forward_(std::move(forward)), warmup_(warmup), eager_reason_(std::move(eager_reason)) {}

Tensor GraphedForward::operator()(const Tensor& x) {
  if (graph_.captured() && x.shape() == input_.shape() && x.dtype() == input_.dtype()) {
    if (x.raw() != input_.raw()) input_.copy_from(x);
    graph_.replay();
    return output_.clone();  // the next replay writes output_ again
  }
  if (!x.is_cuda() || !eager_reason_.empty() || graph_.captured()) return forward_(x);
  if (x.shape() != eager_shape_) eager_shape_ = x.shape(), eager_runs_ = 0;
  if (eager_runs_ < warmup_) {
    ++eager_runs_;
    return forward_(x);
  }
  input_ = x.clone();
  // The graph's pool takes new blocks from the driver: give back what the eager calls cached.
  cuda_allocator_release_cache();
  try {
    graph_.capture([&] { output_ = forward_(input_); });
  } catch (const std::exception& e) {
    eager_reason_ = std::string("the CUDA graph capture failed (") + e.what() + ")";
    input_ = output_ = Tensor();
    return forward_(x);
  }
  graph_.replay();
  return output_.clone();
}

std::string GraphedForward::why() const {
  if (!eager_reason_.empty()) return "eager: " + eager_reason_;
  if (graph_.captured())
    return "replayed from a CUDA graph after " + std::to_string(warmup_) + " eager batches";
  return "eager so far (on the GPU, a CUDA graph is captured after " + std::to_string(warmup_) +
         " eager batches of one shape)";
}

}  // namespace mdq

#include "engine/nn/loss.h"

#include "engine/nn/functional.h"
#include "engine/ops/loss.h"

namespace mdq::nn {

Var cross_entropy(const Var& logits, const Tensor& labels) {
  const bool keep_probs = needs_grad({&logits});
  Tensor probs;
  Tensor loss = ops::cross_entropy_forward(logits.value(), labels, keep_probs ? &probs : nullptr);
  Var out = make_output(std::move(loss), {&logits});
  if (out.requires_grad())
    record_backward([logits = GradRef(logits), labels, probs, out = GradRef(out)]() {
      if (!out.has_grad()) return;
      // The upstream grad stays on the device: no host read in the backward pass.
      logits.accumulate_grad(ops::cross_entropy_backward(probs, labels, out.grad()));
    });
  return out;
}

}  // namespace mdq::nn

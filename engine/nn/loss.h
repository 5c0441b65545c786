// Differentiable softmax cross-entropy on integer labels (the training loss).
#pragma once
#include "engine/autograd.h"

namespace mdq::nn {

// Mean over the batch of -log softmax(logits)[label]; logits [N, K], labels i32 [N] on the
// logits' device. One-element result; differentiable with respect to logits only.
Var cross_entropy(const Var& logits, const Tensor& labels);

}  // namespace mdq::nn

// Softmax cross-entropy on integer class labels and top-k accuracy counts, on the CPU or the
// GPU (no autograd: nn::cross_entropy in engine/nn/loss.h is the differentiable version).
#pragma once
#include <cstdint>

#include "engine/tensor.h"

namespace mdq::ops {

// logits f32 [N, K], labels i32 [N] on the same device. Returns a one-element tensor (same
// device): mean over rows of -log softmax(logits)[label], computed with the row maximum
// subtracted so large logits do not overflow. If probs_out is non-null it receives the softmax
// probabilities [N, K] for the backward pass (written in place when it already holds an f32
// [N, K] tensor on that device, replaced otherwise). A label < 0 or >= K throws mdq::Error
// naming the op, the label, its row and K; on the GPU that check costs one small device->host
// copy (and so one stream synchronisation) per call.
Tensor cross_entropy_forward(const Tensor& logits, const Tensor& labels, Tensor* probs_out = nullptr);

// Deferred GPU label checks. When on, cross_entropy_forward does not wait for its range check:
// the kernel's flag is copied back asynchronously and inspected by the next GPU call or by
// check_pending_label_errors(), which throws the same error. The training loop turns this on so
// that a step never stalls the CPU (a sync per step left the GPU idle while the backward pass was
// being launched); a bad label then surfaces at most one step late.
void set_deferred_label_checks(bool on);
void check_pending_label_errors();
// Under a CUDA graph capture (engine/cuda_graph.h) the flag cannot be read back: the forward
// keeps it, and the code that replays the graph calls this after each replay to check it (queued
// as above when checks are deferred, at once otherwise).
void check_captured_labels();

// d loss / d logits = (probs - onehot(labels)) * grad_scale / N, with probs from the forward.
// Labels are range-checked on the CPU; on the GPU they were checked by the forward (rows with
// a bad label are left as probs * scale, nothing out of bounds is touched).
Tensor cross_entropy_backward(const Tensor& probs, const Tensor& labels, float grad_scale);
// The same with grad_scale as a one-element f32 tensor on the probs' device (the upstream
// gradient of the loss), so the backward pass never reads it back to the host.
Tensor cross_entropy_backward(const Tensor& probs, const Tensor& labels, const Tensor& grad_scale);

// How many rows have their label among the k highest logits, ranked by kernels/label_rank.h:
// larger logit first, a tie goes to the lower class index (as argmax keeps the first maximum),
// and a row with any NaN or ±Inf logit never counts, whatever k. Labels are range-checked as in
// cross_entropy_forward.
int64_t count_topk_correct(const Tensor& logits, const Tensor& labels, int k);

}  // namespace mdq::ops

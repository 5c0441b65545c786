// Launchers for the softmax cross-entropy and top-k accuracy kernels (kernels/loss.cu). Logits
// are row-major [rows, cols] f32, labels [rows] i32, all device pointers on mdq::cuda::stream().
// CPU references: engine/ops/loss.cpp.
//
// Label errors: each launcher that takes `bad` first zeroes it, then a row i whose label is
// outside [0, cols) does atomicMax(bad, rows - i). Afterwards bad == 0 means every label was
// valid, otherwise the first bad row is rows - bad (the caller copies it back and throws).
#pragma once
#include <cstdint>

namespace mdq::kernels {

// probs (nullable) = softmax of each row; row_loss[i] = logsumexp(row i) - logits[i, label];
// loss[0] = mean of row_loss (fixed summation order).
void cross_entropy_forward_f32(const float* logits, const int32_t* labels, int64_t rows, int64_t cols,
                               float* probs, float* row_loss, float* loss, uint32_t* bad);

// grad = (probs - onehot(labels)) * scale * (*scale_device if non-null) / rows.
void cross_entropy_backward_f32(const float* probs, const int32_t* labels, int64_t rows, int64_t cols, float scale,
                                const float* scale_device, float* grad);

// count[0] = number of rows whose label ranks below k (rule: kernels/label_rank.h).
void count_topk_correct_f32(const float* logits, const int32_t* labels, int64_t rows, int64_t cols, int k,
                            uint32_t* count, uint32_t* bad);

}  // namespace mdq::kernels

// The one ranking rule every accuracy figure uses (training, mdq-eval, mdq-infer, the GPU
// counter): classes are ordered by logit, larger first, and a tie goes to the LOWER class index,
// exactly as an argmax that keeps the first maximum. A row with any non-finite logit (NaN, ±Inf)
// ranks nowhere: a diverged network never scores. Plain C++ for the host, also compiled by nvcc
// for kernels/loss.cu, so the CPU reference and the kernel cannot drift apart.
#pragma once
#include <cstdint>

#include "kernels/host_device.h"

namespace mdq::rank {

// Does class j (logit xj) sit ahead of the label (class `label`, logit xl)?
MDQ_HD bool outranks(float xj, int64_t j, float xl, int64_t label) {
  return xj > xl || (xj == xl && j < label);
}

MDQ_HD bool finite(float x) { return x - x == 0.f; }  // false for NaN and ±Inf

// The label's 0-based position in the row under the rule above, or -1 when a logit is not finite.
MDQ_HD int64_t label_rank(const float* row, int64_t cols, int64_t label) {
  const float xl = row[label];
  int64_t ahead = 0;
  for (int64_t j = 0; j < cols; ++j) {
    if (!finite(row[j])) return -1;
    ahead += outranks(row[j], j, xl, label) ? 1 : 0;
  }
  return ahead;
}

// The predicted class (rank 0), or -1 when a logit is not finite.
MDQ_HD int64_t argmax(const float* row, int64_t cols) {
  int64_t best = 0;
  for (int64_t j = 0; j < cols; ++j) {
    if (!finite(row[j])) return -1;
    if (row[j] > row[best]) best = j;
  }
  return best;
}

}  // namespace mdq::rank

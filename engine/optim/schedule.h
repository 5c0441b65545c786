// The learning-rate schedule of the trainer: lr × γ at each of a list of iterations
// (mdq-train's --lr, --lr-step, --lr-gamma). The reference recipe (docs/DESIGN.md §1) is
// lr 1e-3 multiplied by γ every 30k iterations: milestones 30000, 60000, 90000.
#pragma once
#include <cstdint>
#include <vector>

namespace mdq::optim {

// lr(iter) = base * gamma^(number of milestones <= iter), iter counted from 0: the first
// decayed iteration is the first milestone. Milestones must be positive and increasing.
class MultiStepLr {
 public:
  MultiStepLr(float base, std::vector<int64_t> milestones, float gamma);
  float lr(int64_t iter) const;

 private:
  float base_;
  std::vector<int64_t> milestones_;
  float gamma_;
};

}  // namespace mdq::optim

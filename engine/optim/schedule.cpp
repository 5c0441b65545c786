// MultiStepLr. The power is taken in double, so the lr at a milestone is the nearest float to
// base * gamma^k.
#include "engine/optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "common/error.h"

namespace mdq::optim {

MultiStepLr::MultiStepLr(float base, std::vector<int64_t> milestones, float gamma)
    : base_(base), milestones_(std::move(milestones)), gamma_(gamma) {
  MDQ_CHECK(base >= 0 && gamma > 0, "MultiStepLr: needs lr >= 0 and gamma > 0; got lr " << base << ", gamma " << gamma);
  for (size_t i = 0; i < milestones_.size(); ++i)
    MDQ_CHECK(milestones_[i] > 0 && (i == 0 || milestones_[i] > milestones_[i - 1]),
              "MultiStepLr: milestones must be positive and increasing; milestone " << i << " is " << milestones_[i]);
}

float MultiStepLr::lr(int64_t iter) const {
  const auto passed = std::upper_bound(milestones_.begin(), milestones_.end(), iter) - milestones_.begin();
  return static_cast<float>(static_cast<double>(base_) * std::pow(static_cast<double>(gamma_), static_cast<double>(passed)));
}

}  // namespace mdq::optim

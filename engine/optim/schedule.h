// Learning-rate schedules: the lr to use at iteration `iter` (counted from 0). The reference
// recipe (DESIGN.md §1) is StepLr(1e-3, 30000, gamma).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mdq::optim {

class LrSchedule {
 public:
  virtual ~LrSchedule() = default;
  virtual float lr(int64_t iter) const = 0;
  virtual std::string describe() const = 0;  // the spec make_schedule reads back, e.g. "step:0.001:30000:0.3"
};

// lr = base for every iteration.
class ConstantLr : public LrSchedule {
 public:
  explicit ConstantLr(float base);
  float lr(int64_t iter) const override;
  std::string describe() const override;

 private:
  float base_;
};

// lr = base * gamma^floor(iter / step): the first decayed iteration is iter == step.
class StepLr : public LrSchedule {
 public:
  StepLr(float base, int64_t step, float gamma);
  float lr(int64_t iter) const override;
  std::string describe() const override;

 private:
  float base_;
  int64_t step_;
  float gamma_;
};

// lr = base * gamma^(number of milestones <= iter). Milestones must be increasing.
class MultiStepLr : public LrSchedule {
 public:
  MultiStepLr(float base, std::vector<int64_t> milestones, float gamma);
  float lr(int64_t iter) const override;
  std::string describe() const override;

 private:
  float base_;
  std::vector<int64_t> milestones_;
  float gamma_;
};

// lr = min_lr + (base - min_lr) * (1 + cos(pi * iter / total_iters)) / 2, and min_lr from
// iter >= total_iters on.
class CosineLr : public LrSchedule {
 public:
  CosineLr(float base, int64_t total_iters, float min_lr = 0);
  float lr(int64_t iter) const override;
  std::string describe() const override;

 private:
  float base_;
  int64_t total_;
  float min_lr_;
};

// Builds a schedule from a spec (fields separated by ':'):
//   "constant:LR"   "step:LR:STEP:GAMMA"   "multistep:LR:M1,M2,...:GAMMA"   "cosine:LR:TOTAL[:MIN_LR]"
// A bare number is "constant:<number>". Throws, quoting the spec and the expected forms.
std::unique_ptr<LrSchedule> make_schedule(const std::string& spec);

}  // namespace mdq::optim

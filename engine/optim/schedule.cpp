// Learning-rate schedules and their spec strings. Powers and cosines are computed in double so
// the lr at a boundary is the nearest float to the exact value.
#include "engine/optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "engine/error.h"

namespace mdq::optim {
namespace {

float decayed(float base, float gamma, int64_t times) {
  return static_cast<float>(static_cast<double>(base) * std::pow(static_cast<double>(gamma), static_cast<double>(times)));
}

// The shortest decimal that reads back as the same float ("0.1", not "0.100000001").
std::string fmt(float x) {
  for (int precision = 6;; ++precision) {
    std::ostringstream s;
    s.precision(precision);
    s << x;
    if (precision >= 9 || std::strtof(s.str().c_str(), nullptr) == x) return s.str();
  }
}

}  // namespace

ConstantLr::ConstantLr(float base) : base_(base) {
  MDQ_CHECK(base >= 0, "ConstantLr: lr must be >= 0, got " << base);
}
float ConstantLr::lr(int64_t) const { return base_; }
std::string ConstantLr::describe() const { return "constant:" + fmt(base_); }

StepLr::StepLr(float base, int64_t step, float gamma) : base_(base), step_(step), gamma_(gamma) {
  MDQ_CHECK(base >= 0 && step > 0 && gamma > 0,
            "StepLr: needs lr >= 0, step > 0, gamma > 0; got lr " << base << ", step " << step << ", gamma " << gamma);
}
float StepLr::lr(int64_t iter) const { return decayed(base_, gamma_, std::max<int64_t>(iter, 0) / step_); }
std::string StepLr::describe() const { return "step:" + fmt(base_) + ":" + std::to_string(step_) + ":" + fmt(gamma_); }

MultiStepLr::MultiStepLr(float base, std::vector<int64_t> milestones, float gamma)
    : base_(base), milestones_(std::move(milestones)), gamma_(gamma) {
  MDQ_CHECK(base >= 0 && gamma > 0, "MultiStepLr: needs lr >= 0 and gamma > 0; got lr " << base << ", gamma " << gamma);
  for (size_t i = 0; i < milestones_.size(); ++i)
    MDQ_CHECK(milestones_[i] > 0 && (i == 0 || milestones_[i] > milestones_[i - 1]),
              "MultiStepLr: milestones must be positive and increasing; milestone " << i << " is " << milestones_[i]);
}
float MultiStepLr::lr(int64_t iter) const {
  const auto passed = std::upper_bound(milestones_.begin(), milestones_.end(), iter) - milestones_.begin();
  return decayed(base_, gamma_, passed);
}
std::string MultiStepLr::describe() const {
  std::string s = "multistep:" + fmt(base_) + ":";
  for (size_t i = 0; i < milestones_.size(); ++i) s += (i ? "," : "") + std::to_string(milestones_[i]);
  return s + ":" + fmt(gamma_);
}

CosineLr::CosineLr(float base, int64_t total_iters, float min_lr) : base_(base), total_(total_iters), min_lr_(min_lr) {
  MDQ_CHECK(base >= min_lr && min_lr >= 0 && total_iters > 0,
            "CosineLr: needs lr >= min_lr >= 0 and total_iters > 0; got lr " << base << ", min_lr " << min_lr
                                                                         << ", total_iters " << total_iters);
}
float CosineLr::lr(int64_t iter) const {
  if (iter >= total_) return min_lr_;
  const double t = static_cast<double>(std::max<int64_t>(iter, 0)) / static_cast<double>(total_);
  const double pi = 3.14159265358979323846;
  return static_cast<float>(min_lr_ + (static_cast<double>(base_) - min_lr_) * 0.5 * (1.0 + std::cos(pi * t)));
}
std::string CosineLr::describe() const {
  return "cosine:" + fmt(base_) + ":" + std::to_string(total_) + ":" + fmt(min_lr_);
}

namespace {

const char* kForms = "expected constant:LR, step:LR:STEP:GAMMA, multistep:LR:M1,M2,...:GAMMA or cosine:LR:TOTAL[:MIN_LR]";

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  if (!s.empty() && s.back() == sep) out.emplace_back();
  return out;
}

double number(const std::string& field, const std::string& spec) {
  char* end = nullptr;
  const double x = field.empty() ? 0.0 : std::strtod(field.c_str(), &end);
  MDQ_CHECK(!field.empty() && end && *end == '\0' && std::isfinite(x),
            "lr schedule '" << spec << "': '" << field << "' is not a number (" << kForms << ")");
  return x;
}

int64_t integer(const std::string& field, const std::string& spec) {
  const double x = number(field, spec);
  MDQ_CHECK(x == std::floor(x) && std::fabs(x) < 9e15,
            "lr schedule '" << spec << "': '" << field << "' is not an integer (" << kForms << ")");
  return static_cast<int64_t>(x);
}

}  // namespace

std::unique_ptr<LrSchedule> make_schedule(const std::string& spec) {
  const std::vector<std::string> f = split(spec, ':');
  MDQ_CHECK(!f.empty(), "lr schedule '': empty spec (" << kForms << ")");
  const std::string& kind = f[0];
  auto want = [&](size_t lo, size_t hi) {
    MDQ_CHECK(f.size() >= lo && f.size() <= hi,
              "lr schedule '" << spec << "': wrong number of fields for '" << kind << "' (" << kForms << ")");
  };
  if (f.size() == 1) return std::make_unique<ConstantLr>(static_cast<float>(number(kind, spec)));
  if (kind == "constant") {
    want(2, 2);
    return std::make_unique<ConstantLr>(static_cast<float>(number(f[1], spec)));
  }
  if (kind == "step") {
    want(4, 4);
    return std::make_unique<StepLr>(static_cast<float>(number(f[1], spec)), integer(f[2], spec),
                                    static_cast<float>(number(f[3], spec)));
  }
  if (kind == "multistep") {
    want(4, 4);
    std::vector<int64_t> milestones;
    if (!f[2].empty())
      for (const std::string& m : split(f[2], ',')) milestones.push_back(integer(m, spec));
    return std::make_unique<MultiStepLr>(static_cast<float>(number(f[1], spec)), milestones,
                                         static_cast<float>(number(f[3], spec)));
  }
  if (kind == "cosine") {
    want(3, 4);
    return std::make_unique<CosineLr>(static_cast<float>(number(f[1], spec)), integer(f[2], spec),
                                      f.size() == 4 ? static_cast<float>(number(f[3], spec)) : 0.0f);
  }
  MDQ_FAIL("lr schedule '" << spec << "': unknown kind '" << kind << "' (" << kForms << ")");
}

}  // namespace mdq::optim

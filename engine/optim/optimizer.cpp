// Optimizer base: parameter checks, zero_grad, and the step counters every optimizer keeps.
#include "engine/optim/optimizer.h"

#include <limits>

namespace mdq::optim {
namespace {

int64_t bump(int32_t& counter) {
  MDQ_CHECK(counter < std::numeric_limits<int32_t>::max(), "Optimizer: step counter overflow");
  return ++counter;
}

}  // namespace

Optimizer::Optimizer(std::vector<nn::ParamRef> params) : params_(std::move(params)) {
  for (size_t i = 0; i < params_.size(); ++i) {
    MDQ_CHECK(params_[i].var.defined(), "Optimizer: parameter " << i << " ('" << params_[i].name << "') is undefined");
    check_dtype("Optimizer", params_[i].var.value(), DType::F32);
    for (size_t j = 0; j < i; ++j)
      MDQ_CHECK(!params_[i].var.same_as(params_[j].var),
                "Optimizer: parameter '" << params_[i].name << "' is listed twice (also as '" << params_[j].name
                                         << "'); it would be stepped twice");
  }
  MDQ_CHECK(params_.size() < static_cast<size_t>(std::numeric_limits<int32_t>::max()), "Optimizer: too many parameters");
  steps_ = Tensor::zeros({static_cast<int64_t>(params_.size()) + 1}, DType::I32, Device::CPU);
}

Optimizer::~Optimizer() = default;

void Optimizer::zero_grad() {
  for (nn::ParamRef& p : params_) p.var.zero_grad();
}

std::vector<std::pair<std::string, Tensor*>> Optimizer::state() { return {{"optim.steps", &steps_}}; }

std::string Optimizer::param_key(size_t i) const {
  return params_[i].name.empty() ? "param" + std::to_string(i) : params_[i].name;
}

const Tensor* Optimizer::usable_grad(const char* who, size_t i) const {
  const Var& var = params_[i].var;
  if (!var.has_grad()) return nullptr;
  const Tensor& g = var.grad();
  const Tensor& w = var.value();
  MDQ_CHECK(g.dtype() == DType::F32 && g.shape() == w.shape() && g.device() == w.device(),
            who << ": parameter '" << params_[i].name << "' is " << w.describe() << " but its grad is " << g.describe());
  return &g;
}

void Optimizer::follow_device(Tensor& state, const Tensor& value) {
  if (state.defined() && state.device() != value.device()) state = state.to(value.device());
}

void Optimizer::count_step() { bump(steps_.data<int32_t>()[0]); }
int64_t Optimizer::count_update(size_t i) { return bump(steps_.data<int32_t>()[1 + i]); }

}  // namespace mdq::optim

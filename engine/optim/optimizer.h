// Optimizer: the base of SGD and Adam. Holds the parameters it steps, clears their grads, and
// exposes its state (moments, step counters) as named tensors so a checkpoint can save and
// restore it (engine/checkpoint.h). The direction each optimizer produces is DESIGN.md E8.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "engine/nn/module.h"

namespace mdq::optim {

class Optimizer {
 public:
  explicit Optimizer(std::vector<nn::ParamRef> params);
  virtual ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a grad; parameters without one are skipped (and
  // their state is left as it was).
  virtual void step(float lr) = 0;
  // Drops every parameter's grad (the next backward starts from nothing).
  void zero_grad();
  // Named state tensors, pointers valid for the optimizer's lifetime. To save: copy each *tensor
  // into the checkpoint. To restore: (*tensor).copy_from(checkpoint.get(name)). Names are
  // "optim.<what>.<parameter name>" plus "optim.steps" (one CPU i32 tensor of counters).
  virtual std::vector<std::pair<std::string, Tensor*>> state();

  const std::vector<nn::ParamRef>& params() const { return params_; }

 protected:
  // The name a parameter's state goes under: its dotted name, or "param<i>" when it has none.
  std::string param_key(size_t i) const;
  // The parameter's grad when it has one that this step can use (f32, same shape and device as
  // the value); nullptr when it has none. Throws, naming the parameter, on a mismatched grad.
  const Tensor* usable_grad(const char* who, size_t i) const;
  // A state tensor follows its parameter when the model moved after the optimizer was built.
  static void follow_device(Tensor& state, const Tensor& value);
  // Counts a step() call, and an update of parameter i (returns its new count, t >= 1).
  void count_step();
  int64_t count_update(size_t i);

  std::vector<nn::ParamRef> params_;
  // Step counters on the CPU: [0] counts step() calls, [1 + i] counts the updates parameter i
  // received (it starts SGD's momentum buffer and sets Adam's bias correction, as in PyTorch).
  Tensor steps_;
};

}  // namespace mdq::optim

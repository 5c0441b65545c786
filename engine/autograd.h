// Tape-based reverse-mode autograd. An op that runs while grad is enabled and has an input
// that requires grad appends a backward closure to the tape; backward(loss) seeds dL/dL = 1 and
// replays the tape in reverse, each closure adding into its inputs' grads. Then the tape is
// cleared. One tape per thread.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "engine/tensor.h"

namespace mdq {

// What a backward closure holds of a Var whose value it does not read (an op's output, whose
// gradient is all it needs; an input whose shape alone it needs): the gradient and its hook, not
// the value. An activation then lives as long as the forward code and the closures that read it
// hold its Var, not until backward reaches every op that touched it. Var is a GradRef that also
// holds the value; `GradRef g = var;` keeps the gradient side only.
class GradRef {
 public:
  GradRef() = default;
  bool defined() const { return impl_ != nullptr; }
  bool requires_grad() const;
  bool has_grad() const;
  const Tensor& grad() const;  // throws if none was accumulated
  // A handle: these change the shared state, so they are const like shared_ptr's get().
  // grad += g. The first call shares g's storage instead of copying it; a later one adds in
  // place only while this Var alone holds its grad, else it makes a fresh sum (autograd.cpp).
  // g must have the value's shape (checked while the value is alive).
  void accumulate_grad(const Tensor& g) const;
  void accumulate_grad(Tensor&& g) const;
  // For an op that can add its gradient into an existing one as it computes it (conv2d's input
  // gradient): when this Var has a grad that it alone holds, add(grad) sums into it in place
  // and the grad hook runs: true. Otherwise nothing happens (false) and the op accumulates a
  // fresh gradient as usual. The sum must equal accumulate_grad's bit for bit.
  bool add_into_grad(const std::function<void(Tensor&)>& add) const;
  // The same gradient, held elsewhere (data-parallel: its mean, in the bucket it was reduced in).
  // Not a contribution: the grad hook does not run.
  void replace_grad(Tensor g) const;
  bool same_as(const GradRef& other) const { return impl_ == other.impl_; }
  // True once no Var holds the value any more (only GradRefs are left): it has been freed.
  bool value_released() const { return impl_ && impl_->value.expired(); }

 protected:
  struct Impl {
    std::weak_ptr<Tensor> value;  // the Vars' value, while one of them holds it
    Tensor grad;
    bool requires_grad = false;
    std::function<void()> grad_hook;
  };
  std::string describe_value() const;  // for messages: the value, or that it is gone
  std::shared_ptr<Impl> impl_;
};

class Var : public GradRef {
 public:
  Var() = default;
  explicit Var(Tensor value, bool requires_grad = false);

  const Tensor& value() const;
  Tensor& value();
  const Shape& shape() const { return value().shape(); }
  void set_requires_grad(bool on);
  void zero_grad() const;  // drops the grad
  // Called after every accumulate_grad into this Var; an empty function removes it. Data-parallel
  // training starts reducing a gradient bucket as soon as its parameters' grads are complete
  // (engine/dist/grad_reducer.h), while backward goes on.
  void set_grad_hook(std::function<void()> hook) const;

 private:
  std::shared_ptr<Tensor> value_;  // shared by the copies of this Var, not by its GradRefs
};

bool grad_enabled();
// Within its lifetime, ops record nothing (evaluation, optimizer steps).
class NoGradScope {
 public:
  NoGradScope();
  ~NoGradScope();
  NoGradScope(const NoGradScope&) = delete;
  NoGradScope& operator=(const NoGradScope&) = delete;
 private:
  bool previous_;
};

// Does an op with these inputs need to record? (grad enabled and any input requires grad)
bool needs_grad(std::initializer_list<const Var*> inputs);
// Appends a backward closure; called by ops only when needs_grad(...) was true.
void record_backward(std::function<void()> fn);
// Seeds the grad of a one-element loss with 1, runs the tape in reverse, clears it.
void backward(const Var& loss);
void clear_tape();
size_t tape_size();

}  // namespace mdq

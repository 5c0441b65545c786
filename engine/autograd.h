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

class Var {
 public:
  Var() = default;
  explicit Var(Tensor value, bool requires_grad = false);

  bool defined() const { return impl_ != nullptr; }
  const Tensor& value() const;
  Tensor& value();
  const Shape& shape() const { return value().shape(); }
  bool requires_grad() const;
  void set_requires_grad(bool on);

  bool has_grad() const;
  const Tensor& grad() const;            // throws if none was accumulated
  // A Var is a handle: these change the shared state, so they are const like shared_ptr's get().
  // grad += g. The first call shares g's storage instead of copying it; a later one adds in
  // place only while this Var alone holds its grad, else it makes a fresh sum (autograd.cpp).
  void accumulate_grad(const Tensor& g) const;
  void accumulate_grad(Tensor&& g) const;
  // For an op that can add its gradient into an existing one as it computes it (conv2d's input
  // gradient): when this Var has a grad that it alone holds, add(grad) sums into it in place
  // and the grad hook runs: true. Otherwise nothing happens (false) and the op accumulates a
  // fresh gradient as usual. The sum must equal accumulate_grad's bit for bit.
  bool add_into_grad(const std::function<void(Tensor&)>& add) const;
  void zero_grad() const;                      // drops the grad
  // Called after every accumulate_grad into this Var; an empty function removes it. Data-parallel
  // training starts reducing a gradient bucket as soon as its parameters' grads are complete
  // (engine/dist/grad_reducer.h), while backward goes on.
  void set_grad_hook(std::function<void()> hook) const;

  bool same_as(const Var& other) const { return impl_ == other.impl_; }

 private:
  struct Impl {
    Tensor value;
    Tensor grad;
    bool requires_grad = false;
    std::function<void()> grad_hook;
  };
  std::shared_ptr<Impl> impl_;
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

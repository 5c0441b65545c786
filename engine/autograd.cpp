#include "engine/autograd.h"

#include <vector>

#include "engine/ops/elementwise.h"

namespace mdq {
namespace {
thread_local bool g_grad_enabled = true;
thread_local std::vector<std::function<void()>> g_tape;
}  // namespace

Var::Var(Tensor value, bool requires_grad) : value_(std::make_shared<Tensor>(std::move(value))) {
  impl_ = std::make_shared<Impl>();
  impl_->value = value_;
  impl_->requires_grad = requires_grad;
}

const Tensor& Var::value() const {
  MDQ_CHECK(value_, "Var: undefined variable");
  return *value_;
}
Tensor& Var::value() {
  MDQ_CHECK(value_, "Var: undefined variable");
  return *value_;
}
void Var::set_requires_grad(bool on) {
  MDQ_CHECK(impl_, "Var: undefined variable");
  impl_->requires_grad = on;
}
void Var::set_grad_hook(std::function<void()> hook) const {
  MDQ_CHECK(impl_, "Var: undefined variable");
  impl_->grad_hook = std::move(hook);
}
void Var::zero_grad() const {
  if (impl_) impl_->grad = Tensor();
}

std::string GradRef::describe_value() const {
  if (!impl_) return "<undefined>";
  const std::shared_ptr<Tensor> v = impl_->value.lock();
  return v ? v->describe() : "<a variable whose value was released>";
}
bool GradRef::requires_grad() const { return impl_ && impl_->requires_grad; }
bool GradRef::has_grad() const { return impl_ && impl_->grad.defined(); }
const Tensor& GradRef::grad() const {
  MDQ_CHECK(has_grad(), "Var::grad: no gradient was accumulated for " << describe_value());
  return impl_->grad;
}
namespace {
// g against the value's shape, while some Var still holds the value.
void check_grad_shape(const std::weak_ptr<Tensor>& value, const Tensor& g) {
  if (const std::shared_ptr<Tensor> v = value.lock()) {
    check_same_shape("accumulate_grad", *v, g);
    // An NHWC bf16 activation's gradient is NHWC bf16 (engine/ops/layout.h); an f32 value's, f32.
    MDQ_CHECK(v->dtype() == g.dtype(), "accumulate_grad: a " << g.describe() << " gradient for " << v->describe());
  }
}
}  // namespace
// A grad may share its storage with another Var's (add passes one gradient to both inputs) or
// with a tensor an op still holds: it is written in place only while this Var is its only holder,
// and otherwise replaced by a fresh sum, so no other holder ever sees it change.
void GradRef::accumulate_grad(const Tensor& g) const {
  MDQ_CHECK(impl_, "Var: undefined variable");
  check_grad_shape(impl_->value, g);
  if (!impl_->grad.defined()) {
    impl_->grad = g;
  } else if (impl_->grad.sole_owner()) {
    check_same_shape("accumulate_grad", impl_->grad, g);
    ops::axpy_(impl_->grad, 1.0f, g);
  } else {
    check_same_shape("accumulate_grad", impl_->grad, g);
    impl_->grad = ops::add(impl_->grad, g);
  }
  if (impl_->grad_hook) impl_->grad_hook();
}
void GradRef::accumulate_grad(Tensor&& g) const {
  MDQ_CHECK(impl_, "Var: undefined variable");
  if (impl_->grad.defined()) return accumulate_grad(static_cast<const Tensor&>(g));
  check_grad_shape(impl_->value, g);
  impl_->grad = std::move(g);
  if (impl_->grad_hook) impl_->grad_hook();
}
bool GradRef::add_into_grad(const std::function<void(Tensor&)>& add) const {
  MDQ_CHECK(impl_, "Var: undefined variable");
  if (!impl_->grad.defined() || !impl_->grad.sole_owner()) return false;
  add(impl_->grad);
  if (impl_->grad_hook) impl_->grad_hook();
  return true;
}

void GradRef::replace_grad(Tensor g) const {
  MDQ_CHECK(impl_, "Var: undefined variable");
  check_grad_shape(impl_->value, g);
  impl_->grad = std::move(g);
}

bool grad_enabled() { return g_grad_enabled; }
NoGradScope::NoGradScope() : previous_(g_grad_enabled) { g_grad_enabled = false; }
NoGradScope::~NoGradScope() { g_grad_enabled = previous_; }

bool needs_grad(std::initializer_list<const Var*> inputs) {
  if (!g_grad_enabled) return false;
  for (const Var* v : inputs)
    if (v && v->requires_grad()) return true;
  return false;
}

void record_backward(std::function<void()> fn) { g_tape.push_back(std::move(fn)); }

void backward(const Var& loss) {
  MDQ_CHECK(loss.value().numel() == 1, "backward: the loss must have one element, got " << loss.value().describe());
  MDQ_CHECK(loss.requires_grad(), "backward: the loss does not depend on anything that requires grad");
  loss.accumulate_grad(Tensor::full(loss.shape(), 1.0f, loss.value().device()));
  std::vector<std::function<void()>> tape;
  tape.swap(g_tape);
  NoGradScope no_grad;  // backward closures do tensor math only
  // Each closure is dropped once it has run: the tensors it saved and the Vars it held go with it,
  // so an activation and its gradient are freed as soon as backward is past them (unless a
  // caller still holds their Var), not at the end, and a gradient that only one Var still holds
  // can be added into in place (add_into_grad).
  for (auto it = tape.rbegin(); it != tape.rend(); ++it) {
    (*it)();
    *it = nullptr;
  }
}

void clear_tape() { g_tape.clear(); }
size_t tape_size() { return g_tape.size(); }

}  // namespace mdq

#include "engine/nn/functional.h"

#include <utility>

#include "engine/nn/layout.h"
#include "engine/ops/activation.h"
#include "engine/ops/layout.h"
#include "engine/ops/elementwise.h"

namespace mdq::nn {

Var make_output(Tensor value, std::initializer_list<const Var*> inputs) {
  return Var(std::move(value), needs_grad(inputs));
}

namespace {
// The residual sums take both activation forms (engine/ops/layout.h); operands of different
// forms meet in the NHWC bf16 one (an NCHW f32 shortcut is converted once).
std::pair<Var, Var> same_form(const Var& a, const Var& b) {
  const bool na = ops::is_nhwc_bf16(a.value()), nb = ops::is_nhwc_bf16(b.value());
  if (na == nb) return {a, b};
  const Tensor& f32 = (na ? b : a).value();
  if (f32.ndim() == 4 && f32.dtype() == DType::F32) return {as_nhwc_bf16(a), as_nhwc_bf16(b)};
  return {as_nchw_f32(a), as_nchw_f32(b)};
}
}  // namespace

Var add(const Var& a_any, const Var& b_any) {
  const auto [a, b] = same_form(a_any, b_any);
  Var out = make_output(ops::add(a.value(), b.value()), {&a, &b});
  if (out.requires_grad())
    record_backward([a = GradRef(a), b = GradRef(b), out = GradRef(out)]() {
      if (!out.has_grad()) return;
      if (a.requires_grad()) a.accumulate_grad(out.grad());
      if (b.requires_grad()) b.accumulate_grad(out.grad());
    });
  return out;
}

Var add_relu(const Var& a_any, const Var& b_any) {
  const auto [a, b] = same_form(a_any, b_any);
  Var out = make_output(ops::add_relu(a.value(), b.value()), {&a, &b});
  if (out.requires_grad())
    record_backward([a = GradRef(a), b = GradRef(b), out]() {  // out's value is the ReLU's mask
      if (!out.has_grad()) return;
      Tensor g = ops::relu_backward(out.grad(), out.value());
      if (a.requires_grad() && b.requires_grad()) a.accumulate_grad(g);  // shared with b's
      const GradRef& last = b.requires_grad() ? b : a;
      if (last.requires_grad()) last.accumulate_grad(std::move(g));
    });
  return out;
}

Var sub(const Var& a_any, const Var& b_any) {
  const Var a = as_nchw_f32(a_any), b = as_nchw_f32(b_any);
  Var out = make_output(ops::sub(a.value(), b.value()), {&a, &b});
  if (out.requires_grad())
    record_backward([a = GradRef(a), b = GradRef(b), out = GradRef(out)]() {
      if (!out.has_grad()) return;
      if (a.requires_grad()) a.accumulate_grad(out.grad());
      if (b.requires_grad()) b.accumulate_grad(ops::scale(out.grad(), -1.0f));
    });
  return out;
}

Var mul(const Var& a_any, const Var& b_any) {
  const Var a = as_nchw_f32(a_any), b = as_nchw_f32(b_any);
  Var out = make_output(ops::mul(a.value(), b.value()), {&a, &b});
  if (out.requires_grad())
    record_backward([a, b, out = GradRef(out)]() {
      if (!out.has_grad()) return;
      if (a.requires_grad()) a.accumulate_grad(ops::mul(out.grad(), b.value()));
      if (b.requires_grad()) b.accumulate_grad(ops::mul(out.grad(), a.value()));
    });
  return out;
}

Var scale(const Var& a_any, float s) {
  const Var a = as_nchw_f32(a_any);
  Var out = make_output(ops::scale(a.value(), s), {&a});
  if (out.requires_grad())
    record_backward([a = GradRef(a), s, out = GradRef(out)]() {
      if (out.has_grad()) a.accumulate_grad(ops::scale(out.grad(), s));
    });
  return out;
}

Var sum(const Var& a_any) {
  const Var a = as_nchw_f32(a_any);
  Var out = make_output(ops::sum_all(a.value()), {&a});
  if (out.requires_grad())
    record_backward([a = GradRef(a), shape = a.shape(), device = a.value().device(), out = GradRef(out)]() {
      if (!out.has_grad()) return;
      // d sum / d a_i = 1: broadcast the scalar grad (read on the host: one float).
      a.accumulate_grad(Tensor::full(shape, out.grad().item(), device));
    });
  return out;
}

}  // namespace mdq::nn

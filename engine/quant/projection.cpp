// Tensor-level projections: shape/device checks, then one dispatch to the CPU reference loop or
// the CUDA launcher (kernels/quant_project.cu). Both evaluate the per-element math of
// kernels/quant_math.h.
#include "engine/quant/projection.h"

#include <utility>

#include "engine/backend/registry.h"
#include "engine/nn/functional.h"

namespace mdq::quant {
namespace {

using backend::CudaBackend;
using backend::dispatch;

// Softmax-family stored tensors are [K, *shape]; the primal is [*shape].
Shape primal_shape(const Method& m, const Tensor& stored) {
  if (!m.is_softmax()) return stored.shape();
  return Shape(stored.shape().begin() + 1, stored.shape().end());
}

void check_stored(const char* op, const Method& m, const Tensor& stored) {
  check_dtype(op, stored, DType::F32);
  if (m.is_softmax())
    MDQ_CHECK(stored.ndim() >= 1 && stored.dim(0) == m.levels,
              op << ": softmax stored variable " << stored.describe() << " needs a leading dimension of "
                 << m.levels << " levels");
}

template <int K>
void gather(const float* s, int64_t n, int64_t i, float (&out)[K]) {
  for (int l = 0; l < K; ++l) out[l] = s[l * n + i];
}

Method tanh_method(const char* op, int levels) {
  MDQ_CHECK(levels == 2 || levels == 3, op << ": tanh projection levels " << levels << " (supported: 2, 3)");
  return {Rule::MdTanhS, levels};
}
Method softmax_method(const char* op, int levels) {
  MDQ_CHECK(levels >= 2 && levels <= 4, op << ": softmax projection levels " << levels << " (supported: 2, 3, 4)");
  return {Rule::MdSoftmaxS, levels};
}

// ---- CPU references, with the CUDA launchers' arguments (kernels/quant_project.h).

void primal_cpu(Rule rule, int levels, const float* s, float beta, float* x, int64_t n) {
  dispatch_step(rule, Dir::Sgd, levels, [&](auto R, auto, auto K) {
    constexpr Rule r = decltype(R)::value;
    constexpr int k = decltype(K)::value;
    for (int64_t i = 0; i < n; ++i) {
      if constexpr (is_softmax_rule(r)) {
        float sv[k];
        gather<k>(s, n, i, sv);
        x[i] = softmax_primal<r, k>(sv, beta);
      } else {
        x[i] = tanh_primal<r, k>(s[i], beta);
      }
    }
  });
}

void round_cpu(Rule rule, int levels, const float* s, const float* x, float* o, int64_t n) {
  dispatch_step(rule, Dir::Sgd, levels, [&](auto R, auto, auto K) {
    constexpr Rule r = decltype(R)::value;
    constexpr int k = decltype(K)::value;
    for (int64_t i = 0; i < n; ++i) {
      if constexpr (is_softmax_rule(r)) {
        float sv[k];
        gather<k>(s, n, i, sv);
        o[i] = softmax_round<k>(sv);
      } else if constexpr (r == Rule::Float) {
        o[i] = x[i];
      } else {
        o[i] = nearest_level<k>(x[i]);
      }
    }
  });
}

void tanh_backward_cpu(int levels, const float* s, const float* g, float beta, float* o, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    o[i] = (levels == 2 ? tanh_project_grad<2>(s[i], beta) : tanh_project_grad<3>(s[i], beta)) * g[i];
}

void softmax_backward_cpu(int levels, const float* s, const float* g, float beta, float* o, int64_t n) {
  with_softmax_levels(levels, [&](auto K) {
    constexpr int k = decltype(K)::value;
    for (int64_t i = 0; i < n; ++i) {
      float sv[k], gs[k];
      gather<k>(s, n, i, sv);
      softmax_project_backward<k>(sv, g[i], beta, gs);
      for (int l = 0; l < k; ++l) o[l * n + i] = gs[l];
    }
  });
}

}  // namespace

void primal_from_stored(const Method& method, const Tensor& stored, float beta, Tensor& primal) {
  check_stored("primal_from_stored", method, stored);
  check_dtype("primal_from_stored", primal, DType::F32);
  check_same_device("primal_from_stored", stored, primal);
  MDQ_CHECK(primal.shape() == primal_shape(method, stored),
            "primal_from_stored: primal " << primal.describe() << " does not fit stored " << stored.describe()
                                          << " of method " << method.name());
  dispatch("primal_from_stored", stored.device(), primal_cpu, &CudaBackend::quant_primal)(
      method.rule, method.levels, stored.data<float>(), beta, primal.data<float>(), primal.numel());
}

Tensor rounded_from(const Method& method, const Tensor& stored, const Tensor& primal) {
  check_stored("rounded_from", method, stored);
  check_same_device("rounded_from", stored, primal);
  MDQ_CHECK(primal.shape() == primal_shape(method, stored),
            "rounded_from: primal " << primal.describe() << " does not fit stored " << stored.describe());
  Tensor out = Tensor::empty(primal.shape(), DType::F32, primal.device());
  dispatch("rounded_from", primal.device(), round_cpu, &CudaBackend::quant_round)(
      method.rule, method.levels, stored.data<float>(), primal.data<float>(), out.data<float>(), primal.numel());
  return out;
}

Tensor tanh_project(const Tensor& dual, float beta, int levels) {
  Tensor x = Tensor::empty(dual.shape(), DType::F32, dual.device());
  primal_from_stored(tanh_method("tanh_project", levels), dual, beta, x);
  return x;
}

Tensor softmax_project(const Tensor& logits, float beta, int levels) {
  Method m = softmax_method("softmax_project", levels);
  check_stored("softmax_project", m, logits);
  Tensor x = Tensor::empty(primal_shape(m, logits), DType::F32, logits.device());
  primal_from_stored(m, logits, beta, x);
  return x;
}

Tensor tanh_round(const Tensor& x, int levels) {
  check_dtype("tanh_round", x, DType::F32);
  return rounded_from(tanh_method("tanh_round", levels), x, x);
}

Tensor softmax_round(const Tensor& stored, int levels) {
  Method m = softmax_method("softmax_round", levels);
  check_stored("softmax_round", m, stored);
  Tensor unused = Tensor::empty(primal_shape(m, stored), DType::F32, stored.device());
  return rounded_from(m, stored, unused);
}

Tensor tanh_project_backward(const Tensor& dual, const Tensor& grad, float beta, int levels) {
  tanh_method("tanh_project_backward", levels);
  check_dtype("tanh_project_backward", dual, DType::F32);
  check_dtype("tanh_project_backward", grad, DType::F32);
  check_same_device("tanh_project_backward", dual, grad);
  check_same_shape("tanh_project_backward", dual, grad);
  Tensor out = Tensor::empty(dual.shape(), DType::F32, dual.device());
  dispatch("tanh_project_backward", dual.device(), tanh_backward_cpu, &CudaBackend::tanh_project_backward)(
      levels, dual.data<float>(), grad.data<float>(), beta, out.data<float>(), dual.numel());
  return out;
}

Tensor softmax_project_backward(const Tensor& logits, const Tensor& grad, float beta, int levels) {
  Method m = softmax_method("softmax_project_backward", levels);
  check_stored("softmax_project_backward", m, logits);
  check_dtype("softmax_project_backward", grad, DType::F32);
  check_same_device("softmax_project_backward", logits, grad);
  MDQ_CHECK(grad.shape() == primal_shape(m, logits), "softmax_project_backward: grad " << grad.describe()
                                                        << " does not fit logits " << logits.describe());
  Tensor out = Tensor::empty(logits.shape(), DType::F32, logits.device());
  dispatch("softmax_project_backward", logits.device(), softmax_backward_cpu, &CudaBackend::softmax_project_backward)(
      levels, logits.data<float>(), grad.data<float>(), beta, out.data<float>(), grad.numel());
  return out;
}

namespace {
// The autograd node of a projection P_beta: out = value (P_beta of in), and in's gradient
// backward(in, out's gradient).
template <class Backward>
Var projection_node(const Var& in, Tensor value, Backward backward) {
  Var out = nn::make_output(std::move(value), {&in});
  if (out.requires_grad())
    record_backward([in, out = GradRef(out), backward]() {
      if (!out.has_grad()) return;
      if (in.requires_grad()) in.accumulate_grad(backward(in.value(), out.grad()));
    });
  return out;
}
}  // namespace

Var tanh_project(const Var& dual, float beta, int levels) {
  return projection_node(dual, tanh_project(dual.value(), beta, levels),
                         [beta, levels](const Tensor& x, const Tensor& g) {
                           return tanh_project_backward(x, g, beta, levels);
                         });
}

Var softmax_project(const Var& logits, float beta, int levels) {
  return projection_node(logits, softmax_project(logits.value(), beta, levels),
                         [beta, levels](const Tensor& x, const Tensor& g) {
                           return softmax_project_backward(x, g, beta, levels);
                         });
}

}  // namespace mdq::quant

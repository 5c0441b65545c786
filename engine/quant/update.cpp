// Tensor-level quantizer step: checks, then one dispatch to the CPU reference (a plain loop over
// weights calling tanh_step / softmax_step of kernels/quant_math.h) or the fused CUDA kernel
// (kernels/quant_update.cu).
#include "engine/quant/update.h"

#include "engine/backend/registry.h"

namespace mdq::quant {
namespace {

void step_cpu(Rule rule, Dir dir, int levels, const StepArgs& args, float* s, const float* g, float* pm, float* pv,
              float* x, int64_t n) {
  dispatch_step(rule, dir, levels, [&](auto R, auto D, auto Kc) {
    constexpr Rule r = decltype(R)::value;
    constexpr Dir d = decltype(D)::value;
    constexpr int k = decltype(Kc)::value;
    for (int64_t i = 0; i < n; ++i) {
      if constexpr (is_softmax_rule(r)) {
        float sv[k], mv[k] = {}, vv[k] = {};
        for (int l = 0; l < k; ++l) {
          sv[l] = s[l * n + i];
          if (pm) mv[l] = pm[l * n + i];
          if (pv) vv[l] = pv[l * n + i];
        }
        softmax_step<r, d, k>(sv, g[i], mv, vv, x[i], args);
        for (int l = 0; l < k; ++l) {
          s[l * n + i] = sv[l];
          if (pm) pm[l * n + i] = mv[l];
          if (pv) pv[l * n + i] = vv[l];
        }
      } else {
        float mi = pm ? pm[i] : 0.f, vi = pv ? pv[i] : 0.f;
        tanh_step<r, d, k>(s[i], g[i], mi, vi, x[i], args);
        if (pm) pm[i] = mi;
        if (pv) pv[i] = vi;
      }
    }
  });
}

}  // namespace

void step_tensors(const Method& method, Dir dir, const StepArgs& args, Tensor& stored, const Tensor& grad, Tensor& m,
                  Tensor& v, Tensor& primal) {
  const char* op = "quant step";
  check_dtype(op, stored, DType::F32);
  check_dtype(op, grad, DType::F32);
  check_dtype(op, primal, DType::F32);
  check_same_device(op, stored, grad);
  check_same_device(op, stored, primal);
  check_same_shape(op, grad, primal);
  const int64_t n = primal.numel();
  const int K = method.planes();
  MDQ_CHECK(stored.numel() == n * K, op << " (" << method.name() << "): stored " << stored.describe()
                                        << " does not hold " << K << " floats per weight of " << primal.describe());
  MDQ_CHECK(m.defined() == uses_m(dir) && v.defined() == uses_v(dir),
            op << ": moments do not match direction " << direction_name(dir));
  for (Tensor* t : {&m, &v})
    if (t->defined()) {
      check_same_device(op, stored, *t);
      check_same_shape(op, stored, *t);
    }
  const bool supported = dispatch_step(method.rule, dir, method.levels, [](auto, auto, auto) {});
  MDQ_CHECK(supported, op << ": unsupported method " << method.name() << " with " << method.levels
                          << " levels. Supported: " << supported_methods());
  backend::dispatch(op, stored.device(), step_cpu, &backend::CudaBackend::quant_step)(
      method.rule, dir, method.levels, args, stored.data<float>(), grad.data<float>(),
      m.defined() ? m.data<float>() : nullptr, v.defined() ? v.data<float>() : nullptr, primal.data<float>(), n);
}

}  // namespace mdq::quant

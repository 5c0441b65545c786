// Tensor-level quantizer step: checks, then one dispatch to the CPU reference (a plain loop over
// weights calling tanh_step / softmax_step of kernels/quant_math.h) or the fused CUDA kernel
// (kernels/quant_update.cu); and MultiStep, which gives the GPU many parameters at once.
#include "engine/quant/update.h"

#include <algorithm>

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

// What a step of these tensors needs; throws naming the problem.
void check_step(const char* op, const Method& method, Dir dir, const Tensor& stored, const Tensor& grad,
                const Tensor& m, const Tensor& v, const Tensor& primal) {
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
  for (const Tensor* t : {&m, &v})
    if (t->defined()) {
      check_same_device(op, stored, *t);
      check_same_shape(op, stored, *t);
    }
  const bool supported = dispatch_step(method.rule, dir, method.levels, [](auto, auto, auto) {});
  MDQ_CHECK(supported, op << ": unsupported method " << method.name() << " with " << method.levels
                          << " levels. Supported: " << supported_methods());
}

float* data_or_null(Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

}  // namespace

void step_tensors(const Method& method, Dir dir, const StepArgs& args, Tensor& stored, const Tensor& grad, Tensor& m,
                  Tensor& v, Tensor& primal) {
  const char* op = "quant step";
  check_step(op, method, dir, stored, grad, m, v, primal);
  backend::dispatch(op, stored.device(), step_cpu, &backend::CudaBackend::quant_step)(
      method.rule, dir, method.levels, args, stored.data<float>(), grad.data<float>(), data_or_null(m),
      data_or_null(v), primal.data<float>(), primal.numel());
}

const MultiStep::Table& MultiStep::table_for(const kernels::QuantStepTensor* tensors, int count) {
  for (const Table& t : tables_)
    if (t.tensors.size() == static_cast<size_t>(count) && std::equal(t.tensors.begin(), t.tensors.end(), tensors))
      return t;
  // A few tables cover a run (one per group of parameters the quantizer steps together); more
  // than that means the parameters keep moving, and the oldest tables are dead.
  constexpr size_t kKeep = 16;
  if (tables_.size() == kKeep) tables_.erase(tables_.begin());
  Table t;
  t.tensors.assign(tensors, tensors + count);
  t.work = kernels::quant_step_work_items(tensors, count);
  const size_t bytes = kernels::quant_step_table_bytes(count, t.work);
  Tensor host = Tensor::empty({static_cast<int64_t>(bytes)}, DType::U8);
  kernels::quant_step_table_fill(tensors, count, host.raw());
  t.device = host.to(Device::CUDA);
  ++tables_built_;
  tables_.push_back(std::move(t));
  return tables_.back();
}

void MultiStep::step(const Method& method, Dir dir, const StepArgs& args, const std::vector<StepTensors>& params) {
  const char* op = "quant step (multi-tensor)";
  if (params.empty()) return;
  const Device device = params.front().stored->device();
  for (const StepTensors& p : params)
    MDQ_CHECK(p.stored->device() == device, op << ": parameters on different devices (" << p.stored->describe()
                                               << " and " << params.front().stored->describe() << ")");
  if (device == Device::CPU) {
    for (const StepTensors& p : params) step_tensors(method, dir, args, *p.stored, *p.grad, *p.m, *p.v, *p.primal);
    return;
  }
  for (const StepTensors& p : params) check_step(op, method, dir, *p.stored, *p.grad, *p.m, *p.v, *p.primal);
  const auto launch = backend::cuda_impl(op, &backend::CudaBackend::quant_step_multi);
  for (size_t first = 0; first < params.size(); first += kernels::kQuantMultiMax) {
    const int count = static_cast<int>(std::min<size_t>(kernels::kQuantMultiMax, params.size() - first));
    scratch_.clear();
    grads_.clear();
    for (int i = 0; i < count; ++i) {
      const StepTensors& p = params[first + i];
      scratch_.push_back({p.stored->data<float>(), data_or_null(*p.m), data_or_null(*p.v), p.primal->data<float>(),
                          p.primal->numel()});
      grads_.push_back(p.grad->data<float>());
    }
    const Table& t = table_for(scratch_.data(), count);
    launch(method.rule, dir, method.levels, args, t.device.raw(), count, t.work, grads_.data());
  }
}

}  // namespace mdq::quant

#include "tests/ops/op_runner.h"

#include <algorithm>

#include "engine/device.h"
#include "engine/nn/functional.h"
#include "engine/ops/layout.h"
#include "tests/support/finite_differences.h"
#include "tests/support/inputs.h"

namespace mdq::optest {

std::vector<Device> accelerators() {
  if (cuda_available()) return {Device::CUDA};
  return {};
}

Tensors to_device(const Tensors& ts, Device device) {
  Tensors out;
  for (const Tensor& t : ts) out.push_back(t.defined() ? t.to(device) : Tensor());
  return out;
}

Tensors run_forward(const OpCase& c, Device device) { return c.forward(to_device(c.inputs, device)); }

Tensors upstream_grads(const OpCase& c, const Tensors& outputs) {
  Tensors r;
  for (int j = 0; j < c.grad_outputs; ++j) r.push_back(testing::random_tensor(outputs[j].shape(), 7000 + j));
  return r;
}

Tensors run_backward(const OpCase& c, Device device, const Tensors& grad_outputs) {
  return c.backward(to_device(c.inputs, device), to_device(grad_outputs, device));
}

LayerRun run_layer(const Layer& layer, const Tensors& inputs, const std::vector<int>& wrt, const Tensor& grad_output) {
  std::vector<Var> vars;
  for (size_t i = 0; i < inputs.size(); ++i)
    vars.emplace_back(inputs[i], std::find(wrt.begin(), wrt.end(), static_cast<int>(i)) != wrt.end());
  LayerRun run;
  Var y = layer(vars);
  // Under bf16 on the GPU a layer may answer in NHWC bf16 (engine/ops/layout.h): compared as NCHW f32.
  run.output = ops::is_nhwc_bf16(y.value()) ? ops::to_nchw_f32(y.value()) : y.value();
  // L = <grad_output, y>: autograd then hands the layer's backward exactly grad_output.
  backward(nn::sum(nn::mul(y, Var(grad_output))));
  for (int k : wrt) run.grads.push_back(vars[static_cast<size_t>(k)].grad());
  return run;
}

std::vector<int64_t> fd_elements(const Tensor& input) {
  // Every element of an input up to 160 (all of the small cases), else 64 spread evenly, first
  // and last included: a probe costs two forwards, and this keeps the CPU half at seconds while
  // every entry is still checked.
  constexpr int64_t kAll = 160, kSample = 64;
  const int64_t n = input.numel();
  if (n <= kAll) return testing::all_elements(input);
  std::vector<int64_t> v;
  for (int64_t j = 0; j < kSample; ++j) v.push_back(j * (n - 1) / (kSample - 1));
  return v;
}

std::vector<double> numeric_grad(const OpCase& c, const Tensors& grad_outputs, size_t k) {
  std::vector<std::vector<float>> weights;
  for (const Tensor& r : grad_outputs) weights.push_back(r.to_vector());
  auto loss = [&](const Tensors& probe) {
    const Tensors out = c.forward(probe);
    double l = 0;
    for (size_t j = 0; j < weights.size(); ++j) {
      const std::vector<float> y = out[j].to_vector();
      for (size_t i = 0; i < y.size(); ++i) l += static_cast<double>(weights[j][i]) * y[i];
    }
    return l;
  };
  const Tensor& x = c.inputs[static_cast<size_t>(c.wrt[k])];
  return testing::central_differences(loss, c.inputs, static_cast<size_t>(c.wrt[k]), fd_elements(x), c.fd_step);
}

Tensor gather(const Tensor& t, const std::vector<int64_t>& elements) {
  const std::vector<float> all = t.to_vector();
  std::vector<float> v;
  for (int64_t i : elements) v.push_back(all[static_cast<size_t>(i)]);
  return Tensor::from_vector(v, {static_cast<int64_t>(v.size())});
}

void poison_next(const std::vector<Shape>& shapes, Device device) {
  if (device == Device::CPU) return;
  Tensors blocks;
  for (const Shape& s : shapes) {
    blocks.push_back(Tensor::empty(s, DType::F32, device));
    testing::poison(blocks.back());
  }
}

std::vector<Shape> shapes_of(const Tensors& ts) {
  std::vector<Shape> s;
  for (const Tensor& t : ts) s.push_back(t.shape());
  return s;
}

std::string where(const OpCase& c, Device device, Precision p) {
  return c.name + " on " + device_name(device) + " under " + precision_name(p);
}

}  // namespace mdq::optest

// CPU reference and one dispatch each for the activations (the per-element math, shared with the
// kernels, is kernels/activation.h).
#include "engine/ops/activation.h"

#include <cmath>

#include "common/bf16.h"
#include "engine/backend/registry.h"

namespace mdq::ops {
namespace {

using backend::CudaBackend;
using backend::dispatch;
using kernels::Activation;

void forward_cpu(Activation act, const float* x, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = kernels::activation_value(act, x[i]);
}

void backward_cpu(Activation act, const float* grad_out, const float* x, float* grad_in, int64_t n) {
  for (int64_t i = 0; i < n; ++i) grad_in[i] = kernels::activation_grad(act, grad_out[i], x[i]);
}

// bf16 activations and gradients (the bf16 NHWC path; nn::add_relu's backward): widened, the
// f32 rule, one rounding, as kernels/elementwise_bf16.cu.
void forward_bf16_cpu(Activation act, const uint16_t* x, uint16_t* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = float_to_bf16(kernels::activation_value(act, bf16_to_float(x[i])));
}

void backward_bf16_cpu(Activation act, const uint16_t* grad_out, const uint16_t* x, uint16_t* grad_in, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    grad_in[i] = float_to_bf16(kernels::activation_grad(act, bf16_to_float(grad_out[i]), bf16_to_float(x[i])));
}

// f32, or bf16 (the bf16 NHWC path; elementwise, so any layout), answered in x's dtype.
Tensor forward(const char* name, Activation act, const Tensor& x) {
  const DType t = x.dtype() == DType::BF16 ? DType::BF16 : DType::F32;
  check_dtype(name, x, t);
  Tensor out = Tensor::empty(x.shape(), t, x.device());
  if (t == DType::BF16)
    dispatch(name, x.device(), forward_bf16_cpu, &CudaBackend::activation_forward_bf16)(
        act, x.data<uint16_t>(), out.data<uint16_t>(), x.numel());
  else
    dispatch(name, x.device(), forward_cpu, &CudaBackend::activation_forward_f32)(act, x.data<float>(),
                                                                                 out.data<float>(), x.numel());
  return out;
}

// f32, or bf16 (the bf16 NHWC path) with grad_out of x's dtype.
Tensor backward(const char* name, Activation act, const Tensor& grad_out, const Tensor& x) {
  const DType t = x.dtype() == DType::BF16 ? DType::BF16 : DType::F32;
  check_dtype(name, grad_out, t);
  check_dtype(name, x, t);
  check_same_device(name, grad_out, x);
  check_same_shape(name, grad_out, x);
  Tensor grad_in = Tensor::empty(x.shape(), t, x.device());
  if (t == DType::BF16)
    dispatch(name, x.device(), backward_bf16_cpu, &CudaBackend::activation_backward_bf16)(
        act, grad_out.data<uint16_t>(), x.data<uint16_t>(), grad_in.data<uint16_t>(), x.numel());
  else
    dispatch(name, x.device(), backward_cpu, &CudaBackend::activation_backward_f32)(
        act, grad_out.data<float>(), x.data<float>(), grad_in.data<float>(), x.numel());
  return grad_in;
}

}  // namespace

Tensor relu_forward(const Tensor& x) { return forward("relu", Activation::ReLU, x); }
Tensor relu_backward(const Tensor& grad_out, const Tensor& x) {
  return backward("relu_backward", Activation::ReLU, grad_out, x);
}
Tensor relu6_forward(const Tensor& x) { return forward("relu6", Activation::ReLU6, x); }
Tensor relu6_backward(const Tensor& grad_out, const Tensor& x) {
  return backward("relu6_backward", Activation::ReLU6, grad_out, x);
}
Tensor sign_forward(const Tensor& x) { return forward("sign", Activation::SignSTE, x); }
Tensor sign_ste_backward(const Tensor& grad_out, const Tensor& x) {
  return backward("sign_ste_backward", Activation::SignSTE, grad_out, x);
}

}  // namespace mdq::ops

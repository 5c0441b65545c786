// CPU reference and device dispatch for the activations (formulas in engine/ops/activation.h;
// the CUDA twins of act_forward/act_backward live in kernels/activation.cu).
#include "engine/ops/activation.h"

#include <cmath>

#ifdef MDQ_HAS_CUDA
#include "kernels/activation.h"
#endif

namespace mdq::ops {
namespace {

enum class Act { ReLU, ReLU6, SignSTE };

float act_forward(Act act, float x) {
  switch (act) {
    case Act::ReLU: return x < 0.f ? 0.f : x;
    case Act::ReLU6: return x < 0.f ? 0.f : (x > 6.f ? 6.f : x);
    case Act::SignSTE: return x < 0.f ? -1.f : (x >= 0.f ? 1.f : x);  // sign(0) = +1; NaN stays NaN
  }
  return x;
}

float act_backward(Act act, float g, float x) {
  switch (act) {
    case Act::ReLU: return x > 0.f ? g : 0.f;
    case Act::ReLU6: return (x > 0.f && x < 6.f) ? g : 0.f;
    case Act::SignSTE: return std::fabs(x) <= 1.f ? g : 0.f;
  }
  return g;
}

#ifdef MDQ_HAS_CUDA
kernels::Activation to_kernel(Act act) {
  return act == Act::ReLU    ? kernels::Activation::ReLU
         : act == Act::ReLU6 ? kernels::Activation::ReLU6
                             : kernels::Activation::SignSTE;
}
#endif

Tensor forward(const char* name, Act act, const Tensor& x) {
  check_dtype(name, x, DType::F32);
  Tensor out = Tensor::empty(x.shape(), DType::F32, x.device());
  if (x.is_cuda()) {
#ifdef MDQ_HAS_CUDA
    kernels::activation_forward_f32(to_kernel(act), x.data<float>(), out.data<float>(), x.numel());
#endif
    return out;
  }
  const float* px = x.data<float>();
  float* po = out.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) po[i] = act_forward(act, px[i]);
  return out;
}

Tensor backward(const char* name, Act act, const Tensor& grad_out, const Tensor& x) {
  check_dtype(name, grad_out, DType::F32);
  check_dtype(name, x, DType::F32);
  check_same_device(name, grad_out, x);
  check_same_shape(name, grad_out, x);
  Tensor grad_in = Tensor::empty(x.shape(), DType::F32, x.device());
  if (x.is_cuda()) {
#ifdef MDQ_HAS_CUDA
    kernels::activation_backward_f32(to_kernel(act), grad_out.data<float>(), x.data<float>(), grad_in.data<float>(),
                                     x.numel());
#endif
    return grad_in;
  }
  const float* pg = grad_out.data<float>();
  const float* px = x.data<float>();
  float* pi = grad_in.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) pi[i] = act_backward(act, pg[i], px[i]);
  return grad_in;
}

}  // namespace

Tensor relu_forward(const Tensor& x) { return forward("relu", Act::ReLU, x); }
Tensor relu_backward(const Tensor& grad_out, const Tensor& x) {
  return backward("relu_backward", Act::ReLU, grad_out, x);
}
Tensor relu6_forward(const Tensor& x) { return forward("relu6", Act::ReLU6, x); }
Tensor relu6_backward(const Tensor& grad_out, const Tensor& x) {
  return backward("relu6_backward", Act::ReLU6, grad_out, x);
}
Tensor sign_forward(const Tensor& x) { return forward("sign", Act::SignSTE, x); }
Tensor sign_ste_backward(const Tensor& grad_out, const Tensor& x) {
  return backward("sign_ste_backward", Act::SignSTE, grad_out, x);
}

}  // namespace mdq::ops

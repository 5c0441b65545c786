// What the two BatchNorm kernel files share (kernels/batchnorm.cu on NCHW f32,
// kernels/batchnorm_nhwc.cu on NHWC bf16): the fused ReLU and the launch-time flag dispatch.
#pragma once
#include <type_traits>

#include "kernels/activation.h"

namespace mdq::kernels::bn {

// The fused ReLU is activation.h's (NaN passes), its gradient g 1[pre > 0].
__device__ __forceinline__ float relu_of(float v) { return activation_value(Activation::ReLU, v); }
__device__ __forceinline__ float relu_grad(float g, float pre) { return activation_grad(Activation::ReLU, g, pre); }

// Calls f(std::true_type / std::false_type): a runtime flag as a template argument.
template <class F>
void with_flag(bool b, F&& f) {
  if (b)
    f(std::true_type{});
  else
    f(std::false_type{});
}

}  // namespace mdq::kernels::bn

// NHWC passes (engine/packed/nhwc.h): argument checks, then one dispatch each to the CPU
// reference of kernels/nhwc_bf16.h or its CUDA launcher (the same arithmetic, so the two agree
// bit for bit), for the values' element type.
#include "engine/packed/nhwc.h"

#include <type_traits>

#include "common/window.h"
#include "engine/backend/registry.h"

namespace mdq::packed {
namespace {

using backend::CudaBackend;
using backend::dispatch;
namespace reference = kernels::reference;

// A pass's CUDA slot for element type T: its f32 or its bf16 (uint16_t) instantiation.
template <class T, class F32Slot, class BF16Slot>
constexpr auto slot_for(F32Slot f32, BF16Slot bf16) {
  if constexpr (std::is_same_v<T, float>) return f32;
  else return bf16;
}

// Calls f(T{}) with T the element type of x's values: uint16_t (bf16 bits) or float.
template <class F>
void by_dtype(const char* op, const Tensor& x, F&& f) {
  MDQ_CHECK(x.defined() && (x.dtype() == DType::BF16 || x.dtype() == DType::F32),
            op << ": expects bf16 or f32 values, got " << x.describe());
  if (x.dtype() == DType::BF16) f(uint16_t{});
  else f(float{});
}

int narrow(int64_t v) { return static_cast<int>(v); }

}  // namespace

Tensor to_nhwc(const Tensor& x, DType dtype) {
  check_dtype("to_nhwc", x, DType::F32);
  check_ndim("to_nhwc", x, 4);
  const int64_t N = x.dim(0), C = x.dim(1), HW = x.dim(2) * x.dim(3);
  Tensor y = Tensor::empty({N, x.dim(2), x.dim(3), C}, dtype, x.device());
  by_dtype("to_nhwc", y, [&](auto zero) {
    using T = decltype(zero);
    const auto cuda = slot_for<T>(&CudaBackend::nchw_f32_to_nhwc_f32, &CudaBackend::nchw_f32_to_nhwc_bf16);
    dispatch("to_nhwc", x.device(), reference::nchw_f32_to_nhwc<T>, cuda)(x.data<float>(), y.data<T>(), N, narrow(C),
                                                                          HW);
  });
  return y;
}

Tensor to_nhwc_bf16_padded(const Tensor& x, int64_t channels) {
  check_dtype("to_nhwc_bf16_padded", x, DType::F32);
  check_ndim("to_nhwc_bf16_padded", x, 4);
  const int64_t N = x.dim(0), C = x.dim(1), HW = x.dim(2) * x.dim(3);
  MDQ_CHECK(channels >= C, "to_nhwc_bf16_padded: " << channels << " channels cannot hold the " << C << " of "
                                                     << x.describe());
  Tensor y = Tensor::empty({N, x.dim(2), x.dim(3), channels}, DType::BF16, x.device());
  dispatch("to_nhwc_bf16_padded", x.device(), reference::nchw_f32_to_nhwc_bf16_padded,
           &CudaBackend::nchw_f32_to_nhwc_bf16_padded)(x.data<float>(), y.data<uint16_t>(), N, narrow(C),
                                                       narrow(channels), HW);
  return y;
}

Tensor to_nchw(const Tensor& x) {
  check_ndim("to_nchw", x, 4);
  const int64_t N = x.dim(0), HW = x.dim(1) * x.dim(2), C = x.dim(3);
  Tensor y = Tensor::empty({N, C, x.dim(1), x.dim(2)}, x.dtype(), x.device());
  by_dtype("to_nchw", x, [&](auto zero) {
    using T = decltype(zero);
    const auto cuda = slot_for<T>(&CudaBackend::nhwc_to_nchw_f32, &CudaBackend::nhwc_to_nchw_bf16);
    dispatch("to_nchw", x.device(), reference::nhwc_to_nchw<T>, cuda)(x.data<T>(), y.data<T>(), N, HW, narrow(C));
  });
  return y;
}

Tensor add_nhwc(const Tensor& a, const Tensor& b, bool relu) {
  if (b.defined()) {
    MDQ_CHECK(a.shape() == b.shape() && a.dtype() == b.dtype(), "add_nhwc: " << a.describe() << " + " << b.describe());
    check_same_device("add_nhwc", a, b);
  }
  const int64_t C = a.dim(-1), P = a.numel() / C;
  Tensor y = Tensor::empty(a.shape(), a.dtype(), a.device());
  by_dtype("add_nhwc", a, [&](auto zero) {
    using T = decltype(zero);
    const T* r = b.defined() ? b.data<T>() : nullptr;
    const auto cuda = slot_for<T>(&CudaBackend::affine_act_nhwc_f32, &CudaBackend::affine_act_nhwc_bf16);
    dispatch("add_nhwc", a.device(), reference::affine_act_nhwc<T>, cuda)(a.data<T>(), nullptr, nullptr, r, relu,
                                                                          y.data<T>(), P, narrow(C));
  });
  return y;
}

Tensor affine_nhwc(const Tensor& x, const Tensor& scale, const Tensor& shift, bool relu) {
  const int64_t C = x.dim(-1), P = x.numel() / C;
  for (const Tensor* t : {&scale, &shift}) {
    if (!t->defined()) continue;
    check_dtype("affine_nhwc", *t, DType::F32);
    check_same_device("affine_nhwc", x, *t);
    MDQ_CHECK(t->numel() == C, "affine_nhwc: " << t->describe() << " must hold one value per channel of "
                                               << x.describe());
  }
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  by_dtype("affine_nhwc", x, [&](auto zero) {
    using T = decltype(zero);
    const auto cuda = slot_for<T>(&CudaBackend::affine_act_nhwc_f32, &CudaBackend::affine_act_nhwc_bf16);
    dispatch("affine_nhwc", x.device(), reference::affine_act_nhwc<T>, cuda)(
        x.data<T>(), scale.defined() ? scale.data<float>() : nullptr, shift.defined() ? shift.data<float>() : nullptr,
        nullptr, relu, y.data<T>(), P, narrow(C));
  });
  return y;
}

Tensor max_pool_nhwc(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  check_ndim("max_pool_nhwc", x, 4);
  MDQ_CHECK(kernel >= 1 && stride >= 1 && padding >= 0 && padding <= kernel / 2,
            "max_pool_nhwc: bad window: kernel " << kernel << ", stride " << stride << ", padding " << padding);
  const int N = narrow(x.dim(0)), H = narrow(x.dim(1)), W = narrow(x.dim(2)), C = narrow(x.dim(3));
  const int k = narrow(kernel), s = narrow(stride), p = narrow(padding);
  const int OH = ops::window_output_size(H, k, s, p), OW = ops::window_output_size(W, k, s, p);
  MDQ_CHECK(OH >= 1 && OW >= 1, "max_pool_nhwc: kernel " << kernel << " larger than the padded input " << x.describe());
  Tensor y = Tensor::empty({N, OH, OW, C}, x.dtype(), x.device());
  by_dtype("max_pool_nhwc", x, [&](auto zero) {
    using T = decltype(zero);
    const auto cuda = slot_for<T>(&CudaBackend::maxpool_nhwc_f32, &CudaBackend::maxpool_nhwc_bf16);
    dispatch("max_pool_nhwc", x.device(), reference::maxpool_nhwc<T>, cuda)(x.data<T>(), y.data<T>(), N, H, W, C, k,
                                                                            s, p);
  });
  return y;
}

Tensor global_avg_pool_nhwc(const Tensor& x) {
  check_ndim("global_avg_pool_nhwc", x, 4);
  const int N = narrow(x.dim(0)), HW = narrow(x.dim(1) * x.dim(2)), C = narrow(x.dim(3));
  Tensor y = Tensor::empty({N, C}, x.dtype(), x.device());
  by_dtype("global_avg_pool_nhwc", x, [&](auto zero) {
    using T = decltype(zero);
    const auto cuda = slot_for<T>(&CudaBackend::avgpool_nhwc_f32, &CudaBackend::avgpool_nhwc_bf16);
    dispatch("global_avg_pool_nhwc", x.device(), reference::avgpool_nhwc<T, T>, cuda)(x.data<T>(), y.data<T>(), N, HW,
                                                                                      C);
  });
  return y;
}

Tensor split_bf16(const Tensor& x) {
  check_dtype("split_bf16", x, DType::F32);
  const int64_t C = x.dim(-1), P = x.numel() / C;
  Shape s = x.shape();
  s.back() = 2 * C;
  Tensor y = Tensor::empty(s, DType::BF16, x.device());
  dispatch("split_bf16", x.device(), reference::split_bf16_nhwc, &CudaBackend::split_bf16_nhwc)(
      x.data<float>(), y.data<uint16_t>(), P, narrow(C));
  return y;
}

}  // namespace mdq::packed

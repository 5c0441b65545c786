// NHWC passes (engine/packed/nhwc.h): argument checks, then kernels/nhwc_bf16.h's CUDA launcher
// or its CPU reference (the same arithmetic, so the two agree bit for bit).
#include "engine/packed/nhwc.h"

#include "kernels/nhwc_bf16.h"

namespace mdq::packed {
namespace {

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
    if (x.is_cuda()) {
#ifdef MDQ_HAS_CUDA
      kernels::nchw_f32_to_nhwc<T>(x.data<float>(), y.data<T>(), N, narrow(C), HW);
#endif
    } else {
      kernels::reference::nchw_f32_to_nhwc<T>(x.data<float>(), y.data<T>(), N, narrow(C), HW);
    }
  });
  return y;
}

Tensor to_nchw(const Tensor& x) {
  check_ndim("to_nchw", x, 4);
  const int64_t N = x.dim(0), HW = x.dim(1) * x.dim(2), C = x.dim(3);
  Tensor y = Tensor::empty({N, C, x.dim(1), x.dim(2)}, x.dtype(), x.device());
  by_dtype("to_nchw", x, [&](auto zero) {
    using T = decltype(zero);
    if (x.is_cuda()) {
#ifdef MDQ_HAS_CUDA
      kernels::nhwc_to_nchw<T>(x.data<T>(), y.data<T>(), N, HW, narrow(C));
#endif
    } else {
      kernels::reference::nhwc_to_nchw<T>(x.data<T>(), y.data<T>(), N, HW, narrow(C));
    }
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
    if (a.is_cuda()) {
#ifdef MDQ_HAS_CUDA
      kernels::affine_act_nhwc<T>(a.data<T>(), nullptr, nullptr, r, relu, y.data<T>(), P, narrow(C));
#endif
    } else {
      kernels::reference::affine_act_nhwc<T>(a.data<T>(), nullptr, nullptr, r, relu, y.data<T>(), P, narrow(C));
    }
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
    if (x.is_cuda()) {
#ifdef MDQ_HAS_CUDA
      kernels::maxpool_nhwc<T>(x.data<T>(), y.data<T>(), N, H, W, C, k, s, p);
#endif
    } else {
      kernels::reference::maxpool_nhwc<T>(x.data<T>(), y.data<T>(), N, H, W, C, k, s, p);
    }
  });
  return y;
}

Tensor global_avg_pool_nhwc(const Tensor& x) {
  check_ndim("global_avg_pool_nhwc", x, 4);
  const int N = narrow(x.dim(0)), HW = narrow(x.dim(1) * x.dim(2)), C = narrow(x.dim(3));
  Tensor y = Tensor::empty({N, C}, x.dtype(), x.device());
  by_dtype("global_avg_pool_nhwc", x, [&](auto zero) {
    using T = decltype(zero);
    if (x.is_cuda()) {
#ifdef MDQ_HAS_CUDA
      kernels::avgpool_nhwc<T, T>(x.data<T>(), y.data<T>(), N, HW, C);
#endif
    } else {
      kernels::reference::avgpool_nhwc<T, T>(x.data<T>(), y.data<T>(), N, HW, C);
    }
  });
  return y;
}

Tensor split_bf16(const Tensor& x) {
  check_dtype("split_bf16", x, DType::F32);
  const int64_t C = x.dim(-1), P = x.numel() / C;
  Shape s = x.shape();
  s.back() = 2 * C;
  Tensor y = Tensor::empty(s, DType::BF16, x.device());
  if (x.is_cuda()) {
#ifdef MDQ_HAS_CUDA
    kernels::split_bf16_nhwc(x.data<float>(), y.data<uint16_t>(), P, narrow(C));
#endif
  } else {
    kernels::reference::split_bf16_nhwc(x.data<float>(), y.data<uint16_t>(), P, narrow(C));
  }
  return y;
}

}  // namespace mdq::packed

#include "engine/ops/elementwise.h"

#ifdef MDQ_HAS_CUDA
#include "kernels/elementwise.h"
#endif

namespace mdq::ops {
namespace {

enum class Bin { Add, Sub, Mul };

Tensor binary(const char* name, Bin op, const Tensor& a, const Tensor& b) {
  check_dtype(name, a, DType::F32);
  check_dtype(name, b, DType::F32);
  check_same_device(name, a, b);
  check_same_shape(name, a, b);
  Tensor out = Tensor::empty(a.shape(), DType::F32, a.device());
  const int64_t n = a.numel();
  if (a.is_cuda()) {
#ifdef MDQ_HAS_CUDA
    auto kop = op == Bin::Add ? kernels::BinaryOp::Add : op == Bin::Sub ? kernels::BinaryOp::Sub : kernels::BinaryOp::Mul;
    kernels::binary_f32(kop, a.data<float>(), b.data<float>(), out.data<float>(), n);
#endif
    return out;
  }
  const float* x = a.data<float>();
  const float* y = b.data<float>();
  float* o = out.data<float>();
  for (int64_t i = 0; i < n; ++i) o[i] = op == Bin::Add ? x[i] + y[i] : op == Bin::Sub ? x[i] - y[i] : x[i] * y[i];
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary("add", Bin::Add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary("sub", Bin::Sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary("mul", Bin::Mul, a, b); }

Tensor scale(const Tensor& a, float s) {
  check_dtype("scale", a, DType::F32);
  Tensor out = Tensor::empty(a.shape(), DType::F32, a.device());
  if (a.is_cuda()) {
#ifdef MDQ_HAS_CUDA
    kernels::scale_f32(a.data<float>(), s, out.data<float>(), a.numel());
#endif
    return out;
  }
  const float* x = a.data<float>();
  float* o = out.data<float>();
  for (int64_t i = 0; i < a.numel(); ++i) o[i] = x[i] * s;
  return out;
}

void axpy_(Tensor& y, float alpha, const Tensor& x) {
  check_dtype("axpy_", y, DType::F32);
  check_dtype("axpy_", x, DType::F32);
  check_same_device("axpy_", y, x);
  check_same_shape("axpy_", y, x);
  if (y.is_cuda()) {
#ifdef MDQ_HAS_CUDA
    kernels::axpy_f32(y.data<float>(), alpha, x.data<float>(), y.numel());
#endif
    return;
  }
  float* py = y.data<float>();
  const float* px = x.data<float>();
  for (int64_t i = 0; i < y.numel(); ++i) py[i] += alpha * px[i];
}

Tensor sum_all(const Tensor& a) {
  check_dtype("sum_all", a, DType::F32);
  Tensor out = Tensor::empty({1}, DType::F32, a.device());
  if (a.is_cuda()) {
#ifdef MDQ_HAS_CUDA
    kernels::sum_f32(a.data<float>(), a.numel(), out.data<float>());
#endif
    return out;
  }
  double acc = 0.0;
  const float* x = a.data<float>();
  for (int64_t i = 0; i < a.numel(); ++i) acc += x[i];
  out.data<float>()[0] = static_cast<float>(acc);
  return out;
}

}  // namespace mdq::ops

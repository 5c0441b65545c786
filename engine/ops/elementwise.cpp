// Elementwise ops: checks, the CPU reference loops, and one dispatch each (engine/backend/registry.h;
// the CUDA twins live in kernels/elementwise.cu).
#include "engine/ops/elementwise.h"

#include "common/bf16.h"
#include "engine/backend/registry.h"

namespace mdq::ops {
namespace {

using backend::CudaBackend;
using backend::dispatch;
using kernels::BinaryOp;

void binary_cpu(BinaryOp op, const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    out[i] = kernels::binary_op(op, a[i], b[i]);
}

void scale_cpu(const float* a, float s, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] * s;
}

void axpy_cpu(float* y, float alpha, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// bf16 operands (activations and their gradients on the bf16 NHWC path): widened, the f32 math,
// one rounding, as kernels/elementwise_bf16.cu.
void binary_bf16_cpu(BinaryOp op, const uint16_t* a, const uint16_t* b, uint16_t* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = float_to_bf16(kernels::binary_op(op, bf16_to_float(a[i]), bf16_to_float(b[i])));
}

void sum_cpu(const float* x, int64_t n, float* out) {
  double acc = 0.0;
  for (int64_t i = 0; i < n; ++i) acc += x[i];
  out[0] = static_cast<float>(acc);
}

// out = op(a, b) elementwise, on f32 or on bf16 operands (out may be a: in place).
void binary_into(const char* name, BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  const DType t = a.dtype() == DType::BF16 ? DType::BF16 : DType::F32;
  check_dtype(name, a, t);
  check_dtype(name, b, t);
  check_same_device(name, a, b);
  check_same_shape(name, a, b);
  if (t == DType::BF16)
    dispatch(name, a.device(), binary_bf16_cpu, &CudaBackend::binary_bf16)(op, a.data<uint16_t>(), b.data<uint16_t>(),
                                                                          out.data<uint16_t>(), a.numel());
  else
    dispatch(name, a.device(), binary_cpu, &CudaBackend::binary_f32)(op, a.data<float>(), b.data<float>(),
                                                                    out.data<float>(), a.numel());
}

Tensor binary(const char* name, BinaryOp op, const Tensor& a, const Tensor& b) {
  Tensor out = Tensor::empty(a.shape(), a.dtype() == DType::BF16 ? DType::BF16 : DType::F32, a.device());
  binary_into(name, op, a, b, out);
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary("add", BinaryOp::Add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary("sub", BinaryOp::Sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary("mul", BinaryOp::Mul, a, b); }
Tensor add_relu(const Tensor& a, const Tensor& b) { return binary("add_relu", BinaryOp::AddRelu, a, b); }

Tensor scale(const Tensor& a, float s) {
  check_dtype("scale", a, DType::F32);
  Tensor out = Tensor::empty(a.shape(), DType::F32, a.device());
  dispatch("scale", a.device(), scale_cpu, &CudaBackend::scale_f32)(a.data<float>(), s, out.data<float>(), a.numel());
  return out;
}

void axpy_(Tensor& y, float alpha, const Tensor& x) {
  if (y.dtype() == DType::BF16 && alpha == 1.f) return binary_into("axpy_", BinaryOp::Add, y, x, y);  // a bf16 grad
  check_dtype("axpy_", y, DType::F32);
  check_dtype("axpy_", x, DType::F32);
  check_same_device("axpy_", y, x);
  check_same_shape("axpy_", y, x);
  dispatch("axpy_", y.device(), axpy_cpu, &CudaBackend::axpy_f32)(y.data<float>(), alpha, x.data<float>(), y.numel());
}

Tensor sum_all(const Tensor& a) {
  check_dtype("sum_all", a, DType::F32);
  Tensor out = Tensor::empty({1}, DType::F32, a.device());
  dispatch("sum_all", a.device(), sum_cpu, &CudaBackend::sum_f32)(a.data<float>(), a.numel(), out.data<float>());
  return out;
}

}  // namespace mdq::ops

// Launchers for elementwise CUDA kernels (kernels/elementwise.cu). Pointers are device
// pointers; work is queued on mdq::cuda::stream(). CPU references: engine/ops/elementwise.cpp.
#pragma once
#include <cstdint>

#include "kernels/activation.h"
#include "kernels/host_device.h"

namespace mdq::kernels {

// AddRelu is relu(a + b) with activation.h's relu: a residual sum and the ReLU after it in one pass.
enum class BinaryOp { Add, Sub, Mul, AddRelu };

// The per-element math of binary_f32, shared with the CPU reference (engine/ops/elementwise.cpp).
MDQ_HD float binary_op(BinaryOp op, float x, float y) {
  switch (op) {
    case BinaryOp::Add: return x + y;
    case BinaryOp::Sub: return x - y;
    case BinaryOp::Mul: return x * y;
    case BinaryOp::AddRelu: return activation_value(Activation::ReLU, x + y);
  }
  return x;
}

void fill_f32(float* out, int64_t n, float value);
void binary_f32(BinaryOp op, const float* a, const float* b, float* out, int64_t n);
void scale_f32(const float* a, float s, float* out, int64_t n);
void axpy_f32(float* y, float alpha, const float* x, int64_t n);  // y += alpha * x
void sum_f32(const float* x, int64_t n, float* out);              // out[0] = sum(x), deterministic

}  // namespace mdq::kernels

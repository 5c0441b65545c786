// Launchers for elementwise CUDA kernels (kernels/elementwise.cu). Pointers are device
// pointers; work is queued on mdq::cuda::stream(). CPU references: engine/ops/elementwise.cpp.
#pragma once
#include <cstdint>

namespace mdq::kernels {

enum class BinaryOp { Add, Sub, Mul };

void fill_f32(float* out, int64_t n, float value);
void binary_f32(BinaryOp op, const float* a, const float* b, float* out, int64_t n);
void scale_f32(const float* a, float s, float* out, int64_t n);
void axpy_f32(float* y, float alpha, const float* x, int64_t n);  // y += alpha * x
void sum_f32(const float* x, int64_t n, float* out);              // out[0] = sum(x), deterministic

}  // namespace mdq::kernels

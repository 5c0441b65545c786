// Launchers for row-wise kernels on row-major [rows, cols] f32 matrices (kernels/rowwise.cu).
// Pointers are device pointers; work is queued on mdq::cuda::stream().
// CPU references: engine/ops/matmul.cpp (add_row_vector, sum_rows).
#pragma once
#include <cstdint>

namespace mdq::kernels {

// out[r, c] = x[r, c] + b[c]
void add_row_vector_f32(const float* x, const float* b, float* out, int64_t rows, int64_t cols);
// out[c] = sum_r g[r, c], in a fixed order (deterministic).
void sum_rows_f32(const float* g, float* out, int64_t rows, int64_t cols);

}  // namespace mdq::kernels

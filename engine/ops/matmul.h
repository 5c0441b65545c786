// Dense matrix products on 2-D f32 tensors (cuBLAS on the GPU, plain loops on the CPU), and the
// two row-wise helpers a fully connected layer needs: adding a bias row and summing it back.
#pragma once
#include "engine/tensor.h"

namespace mdq::ops {

// op(a)[M,K] x op(b)[K,N] -> [M,N], where op(t) is t or its transpose. On the GPU the compute
// precision follows mdq::precision() (fp32, tf32 or bf16 operands with fp32 accumulation); the
// result is always f32.
Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a = false, bool transpose_b = false);

// The same product written into an existing [M,N] tensor: out = op(a) op(b), or
// out += op(a) op(b) when accumulate is true (gradient accumulation without a temporary).
void matmul_into(Tensor& out, const Tensor& a, const Tensor& b, bool transpose_a = false,
                 bool transpose_b = false, bool accumulate = false);

// x[N,C] + b[C] broadcast over the rows -> [N,C] (a fully connected layer's bias).
Tensor add_row_vector(const Tensor& x, const Tensor& b);

// g[N,C] -> [C], the sum over rows (the bias gradient). Deterministic on both devices.
Tensor sum_rows(const Tensor& g);

}  // namespace mdq::ops

// CPU reference of the NHWC bf16 BatchNorm (batchnorm_nhwc_bf16.h): the header's equations, sums
// in double in row order, every elementwise expression in f32 as the kernels write it.
#include <cmath>
#include <vector>

#include "common/bf16.h"
#include "dev/kernels/batchnorm_nhwc_bf16.h"

namespace mdq::dev {

void bn_nhwc_bf16_forward_ref(const BnNhwcForward& a) {
  const int64_t m = a.rows, C = a.c;
  std::vector<double> sum(static_cast<size_t>(C), 0.0), sq(static_cast<size_t>(C), 0.0);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < C; ++c) sum[c] += bf16_to_float(a.x[r * C + c]);
  for (int64_t c = 0; c < C; ++c) a.mean[c] = static_cast<float>(sum[c] / static_cast<double>(m));
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const double d = static_cast<double>(bf16_to_float(a.x[r * C + c])) - a.mean[c];
      sq[c] += d * d;
    }
  for (int64_t c = 0; c < C; ++c) {
    const double var = sq[c] / static_cast<double>(m);
    a.invstd[c] = static_cast<float>(1.0 / std::sqrt(var + a.eps));
    if (a.running_mean) {
      const double unbiased = m > 1 ? var * static_cast<double>(m) / static_cast<double>(m - 1) : var;
      a.running_mean[c] = static_cast<float>((1.0 - a.momentum) * a.running_mean[c] + a.momentum * a.mean[c]);
      a.running_var[c] = static_cast<float>((1.0 - a.momentum) * a.running_var[c] + a.momentum * unbiased);
    }
  }
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const int64_t i = r * C + c;
      float pre = (bf16_to_float(a.x[i]) - a.mean[c]) * a.invstd[c];
      if (a.residual) pre = pre + bf16_to_float(a.residual[i]);
      a.out[i] = float_to_bf16(a.relu && !(pre > 0.f) ? 0.f : pre);
    }
}

void bn_nhwc_bf16_backward_ref(const BnNhwcBackward& a) {
  const int64_t m = a.rows, C = a.c;
  auto g_masked = [&](int64_t i) {
    const float g = bf16_to_float(a.grad_out[i]);
    return a.relu && !(bf16_to_float(a.out[i]) > 0.f) ? 0.f : g;
  };
  std::vector<double> sg(static_cast<size_t>(C), 0.0), sgx(static_cast<size_t>(C), 0.0);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const int64_t i = r * C + c;
      const float g = g_masked(i);
      const float xhat = (bf16_to_float(a.x[i]) - a.mean[c]) * a.invstd[c];
      sg[c] += g;
      sgx[c] += static_cast<double>(g) * xhat;
    }
  for (int64_t c = 0; c < C; ++c) {
    a.sum_g[c] = static_cast<float>(sg[c]);
    a.sum_gxhat[c] = static_cast<float>(sgx[c]);
  }
  const float mf = static_cast<float>(m);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const int64_t i = r * C + c;
      const float g = g_masked(i);
      const float xhat = (bf16_to_float(a.x[i]) - a.mean[c]) * a.invstd[c];
      const float d = (g - a.sum_g[c] / mf) - xhat * (a.sum_gxhat[c] / mf);
      a.grad_in[i] = float_to_bf16(a.invstd[c] * d);
      if (a.grad_residual) a.grad_residual[i] = float_to_bf16(g);
    }
}

}  // namespace mdq::dev

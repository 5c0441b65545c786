// CPU reference (double accumulation, two-pass variance) and device dispatch for batch
// normalisation; the math is in engine/ops/batchnorm.h, the CUDA kernels in kernels/batchnorm.cu.
#include "engine/ops/batchnorm.h"

#include <cmath>
#include <vector>

#ifdef MDQ_HAS_CUDA
#include "kernels/batchnorm.h"
#endif

namespace mdq::ops {
namespace {

struct Dims {
  int64_t n, c, hw;
};

Dims dims_of(const char* op, const Tensor& x) {
  check_dtype(op, x, DType::F32);
  MDQ_CHECK(x.ndim() == 4 || x.ndim() == 2, op << ": expected x as [N, C, H, W] or [N, C], got " << x.describe());
  const Dims d{x.dim(0), x.dim(1), x.ndim() == 4 ? x.dim(2) * x.dim(3) : 1};
  MDQ_CHECK(d.n * d.hw > 0 && d.c > 0, op << ": empty input " << x.describe());
  return d;
}

// A per-channel vector, if defined, must be f32 [C] on x's device.
void check_channel_vector(const char* op, const char* what, const Tensor& v, const Tensor& x, int64_t c) {
  if (!v.defined()) return;
  check_dtype(op, v, DType::F32);
  check_same_device(op, x, v);
  MDQ_CHECK(v.ndim() == 1 && v.dim(0) == c,
            op << ": " << what << " " << v.describe() << " should be [" << c << "] for x " << x.describe());
}

#ifdef MDQ_HAS_CUDA
const float* ptr_or_null(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }
float* mutable_ptr_or_null(Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }
#endif

}  // namespace

void batch_norm_finish_channel(int64_t c, double mu, double var, double m, float momentum, float eps, float* mean,
                               float* invstd, Tensor& running_mean, Tensor& running_var) {
  mean[c] = static_cast<float>(mu);
  invstd[c] = static_cast<float>(1.0 / std::sqrt(var + eps));
  if (running_mean.defined()) {
    float& rm = running_mean.data<float>()[c];
    float& rv = running_var.data<float>()[c];
    rm = static_cast<float>((1.0 - momentum) * rm + momentum * mu);
    rv = static_cast<float>((1.0 - momentum) * rv + momentum * var * m / (m - 1.0));
  }
}

BatchNormResult batch_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& running_mean,
                                   Tensor& running_var, bool training, float momentum, float eps) {
  const char* op = "batch_norm";
  const Dims d = dims_of(op, x);
  check_channel_vector(op, "weight", weight, x, d.c);
  check_channel_vector(op, "bias", bias, x, d.c);
  check_channel_vector(op, "running_mean", running_mean, x, d.c);
  check_channel_vector(op, "running_var", running_var, x, d.c);
  MDQ_CHECK(running_mean.defined() == running_var.defined(),
            op << ": running_mean and running_var must both be given or both be undefined");
  MDQ_CHECK(training || running_mean.defined(), op << ": evaluation mode needs running statistics");
  const int64_t m = d.n * d.hw;
  MDQ_CHECK(!training || m > 1, op << ": training needs more than one value per channel, got x " << x.describe());

  BatchNormResult r{Tensor::empty(x.shape(), DType::F32, x.device()), Tensor::empty({d.c}, DType::F32, x.device()),
                    Tensor::empty({d.c}, DType::F32, x.device())};
  if (x.is_cuda()) {
#ifdef MDQ_HAS_CUDA
    const kernels::BatchNormShape s{d.n, d.c, d.hw};
    if (training)
      kernels::batch_norm_stats_f32(s, x.data<float>(), eps, momentum, r.mean.data<float>(), r.invstd.data<float>(),
                                    mutable_ptr_or_null(running_mean), mutable_ptr_or_null(running_var));
    else
      kernels::batch_norm_eval_stats_f32(d.c, running_mean.data<float>(), running_var.data<float>(), eps,
                                         r.mean.data<float>(), r.invstd.data<float>());
    kernels::batch_norm_apply_f32(s, x.data<float>(), r.mean.data<float>(), r.invstd.data<float>(), ptr_or_null(weight),
                                  ptr_or_null(bias), r.out.data<float>());
#endif
    return r;
  }

  const float* px = x.data<float>();
  float* mean = r.mean.data<float>();
  float* invstd = r.invstd.data<float>();
  for (int64_t c = 0; c < d.c; ++c) {
    if (training) {
      double sum = 0.0;
      for (int64_t n = 0; n < d.n; ++n)
        for (int64_t i = 0; i < d.hw; ++i) sum += px[(n * d.c + c) * d.hw + i];
      const double mu = sum / static_cast<double>(m);
      double sq = 0.0;
      for (int64_t n = 0; n < d.n; ++n)
        for (int64_t i = 0; i < d.hw; ++i) {
          const double dev = px[(n * d.c + c) * d.hw + i] - mu;
          sq += dev * dev;
        }
      batch_norm_finish_channel(c, mu, sq / static_cast<double>(m), static_cast<double>(m), momentum, eps, mean, invstd,
                                running_mean, running_var);
    } else {
      mean[c] = running_mean.data<float>()[c];
      invstd[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(running_var.data<float>()[c]) + eps));
    }
  }
  const float* w = weight.defined() ? weight.data<float>() : nullptr;
  const float* b = bias.defined() ? bias.data<float>() : nullptr;
  float* out = r.out.data<float>();
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c)
      for (int64_t i = 0; i < d.hw; ++i) {
        const int64_t k = (n * d.c + c) * d.hw + i;
        out[k] = (px[k] - mean[c]) * invstd[c] * (w ? w[c] : 1.f) + (b ? b[c] : 0.f);
      }
  return r;
}

BatchNormGrads batch_norm_backward(const Tensor& grad_out, const Tensor& x, const Tensor& weight, const Tensor& bias,
                                   const Tensor& mean, const Tensor& invstd, bool training) {
  const char* op = "batch_norm_backward";
  const Dims d = dims_of(op, x);
  check_dtype(op, grad_out, DType::F32);
  check_same_device(op, grad_out, x);
  check_same_shape(op, grad_out, x);
  check_channel_vector(op, "weight", weight, x, d.c);
  check_channel_vector(op, "bias", bias, x, d.c);
  MDQ_CHECK(mean.defined() && invstd.defined(), op << ": needs the mean and invstd saved by batch_norm_forward");
  check_channel_vector(op, "mean", mean, x, d.c);
  check_channel_vector(op, "invstd", invstd, x, d.c);

  // The sums are dweight and dbias themselves; training needs them for dx as well.
  const bool need_sums = training || weight.defined() || bias.defined();
  Tensor sum_g, sum_gxhat;
  if (need_sums) {
    sum_g = Tensor::empty({d.c}, DType::F32, x.device());
    sum_gxhat = Tensor::empty({d.c}, DType::F32, x.device());
  }
  BatchNormGrads grads{Tensor::empty(x.shape(), DType::F32, x.device()), weight.defined() ? sum_gxhat : Tensor(),
                       bias.defined() ? sum_g : Tensor()};
  if (x.is_cuda()) {
#ifdef MDQ_HAS_CUDA
    const kernels::BatchNormShape s{d.n, d.c, d.hw};
    if (need_sums)
      kernels::batch_norm_backward_reduce_f32(s, grad_out.data<float>(), x.data<float>(), mean.data<float>(),
                                              invstd.data<float>(), sum_g.data<float>(), sum_gxhat.data<float>());
    kernels::batch_norm_backward_input_f32(s, training, grad_out.data<float>(), x.data<float>(), mean.data<float>(),
                                           invstd.data<float>(), ptr_or_null(weight), ptr_or_null(sum_g),
                                           ptr_or_null(sum_gxhat), grads.grad_input.data<float>());
#endif
    return grads;
  }

  const float* g = grad_out.data<float>();
  const float* px = x.data<float>();
  const float* mu = mean.data<float>();
  const float* is = invstd.data<float>();
  const float* w = weight.defined() ? weight.data<float>() : nullptr;
  std::vector<double> sg(d.c, 0.0), sgx(d.c, 0.0);
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c)
      for (int64_t i = 0; i < d.hw; ++i) {
        const int64_t k = (n * d.c + c) * d.hw + i;
        sg[c] += g[k];
        sgx[c] += static_cast<double>(g[k]) * ((px[k] - mu[c]) * is[c]);
      }
  if (need_sums)
    for (int64_t c = 0; c < d.c; ++c) {
      sum_g.data<float>()[c] = static_cast<float>(sg[c]);
      sum_gxhat.data<float>()[c] = static_cast<float>(sgx[c]);
    }
  const double inv_m = 1.0 / static_cast<double>(d.n * d.hw);
  float* dx = grads.grad_input.data<float>();
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c) {
      const float scale = (w ? w[c] : 1.f) * is[c];
      for (int64_t i = 0; i < d.hw; ++i) {
        const int64_t k = (n * d.c + c) * d.hw + i;
        if (training) {
          const double xhat = (px[k] - mu[c]) * is[c];
          dx[k] = static_cast<float>(scale * (g[k] - sg[c] * inv_m - xhat * sgx[c] * inv_m));
        } else {
          dx[k] = scale * g[k];
        }
      }
    }
  return grads;
}

}  // namespace mdq::ops

// CPU reference (double accumulation, two-pass variance) and one dispatch each for batch
// normalisation; the math is in engine/ops/batchnorm.h, the CUDA kernels in kernels/batchnorm.cu.
#include "engine/ops/batchnorm.h"

#include <cmath>
#include <vector>

#include "common/bf16.h"
#include "engine/backend/registry.h"
#include "engine/ops/layout.h"
#include "kernels/activation.h"

namespace mdq::ops {
namespace {

using backend::CudaBackend;
using backend::dispatch;
using kernels::BatchNormBackwardArgs;
using kernels::BatchNormForwardArgs;
using kernels::BatchNormNhwcBackwardArgs;
using kernels::BatchNormNhwcForwardArgs;
using kernels::BatchNormShape;

// An NHWC bf16 activation [N, H, W, C] is [rows, C] with rows = N*H*W: NCHW {rows, C, 1}.
BatchNormShape dims_of(const char* op, const Tensor& x) {
  if (is_nhwc_bf16(x)) {
    const BatchNormShape d{x.dim(0) * x.dim(1) * x.dim(2), x.dim(3), 1};
    MDQ_CHECK(d.n > 0 && d.c > 0, op << ": empty input " << x.describe());
    return d;
  }
  check_dtype(op, x, DType::F32);
  MDQ_CHECK(x.ndim() == 4 || x.ndim() == 2, op << ": expected x as [N, C, H, W] or [N, C], got " << x.describe());
  const BatchNormShape d{x.dim(0), x.dim(1), x.ndim() == 4 ? x.dim(2) * x.dim(3) : 1};
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

const float* ptr_or_null(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }
float* mutable_ptr_or_null(Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

void forward_cpu(const BatchNormForwardArgs& a) {
  const BatchNormShape& d = a.s;
  const int64_t m = d.n * d.hw;
  for (int64_t c = 0; c < d.c; ++c) {
    if (a.training) {
      double sum = 0.0;
      for (int64_t n = 0; n < d.n; ++n)
        for (int64_t i = 0; i < d.hw; ++i) sum += a.x[(n * d.c + c) * d.hw + i];
      const double mu = sum / static_cast<double>(m);
      double sq = 0.0;
      for (int64_t n = 0; n < d.n; ++n)
        for (int64_t i = 0; i < d.hw; ++i) {
          const double dev = a.x[(n * d.c + c) * d.hw + i] - mu;
          sq += dev * dev;
        }
      batch_norm_finish_channel(c, mu, sq / static_cast<double>(m), static_cast<double>(m), a.momentum, a.eps, a.mean,
                                a.invstd, a.running_mean, a.running_var);
    } else {
      a.mean[c] = a.running_mean[c];
      a.invstd[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(a.running_var[c]) + a.eps));
    }
  }
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c)
      for (int64_t i = 0; i < d.hw; ++i) {
        const int64_t k = (n * d.c + c) * d.hw + i;
        const float pre = batch_norm_pre(a.x[k], a.mean[c], a.invstd[c], a.weight ? a.weight[c] : 1.f,
                                         a.bias ? a.bias[c] : 0.f);
        a.out[k] = a.relu ? kernels::activation_value(kernels::Activation::ReLU, pre) : pre;
      }
}

void backward_cpu(const BatchNormBackwardArgs& a) {
  const BatchNormShape& d = a.s;
  const float* mu = a.mean;
  const float* is = a.invstd;
  // Relu: g 1[pre > 0], once, for both passes below.
  std::vector<float> masked;
  if (a.relu) {
    masked.resize(static_cast<size_t>(d.n * d.c * d.hw));
    for (int64_t n = 0; n < d.n; ++n)
      for (int64_t c = 0; c < d.c; ++c)
        for (int64_t i = 0; i < d.hw; ++i) {
          const int64_t k = (n * d.c + c) * d.hw + i;
          const float pre =
              batch_norm_pre(a.x[k], mu[c], is[c], a.weight ? a.weight[c] : 1.f, a.bias ? a.bias[c] : 0.f);
          masked[static_cast<size_t>(k)] = kernels::activation_grad(kernels::Activation::ReLU, a.grad_out[k], pre);
        }
  }
  const float* g = a.relu ? masked.data() : a.grad_out;
  std::vector<double> sg(d.c, 0.0), sgx(d.c, 0.0);
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c)
      for (int64_t i = 0; i < d.hw; ++i) {
        const int64_t k = (n * d.c + c) * d.hw + i;
        sg[c] += g[k];
        sgx[c] += static_cast<double>(g[k]) * ((a.x[k] - mu[c]) * is[c]);
      }
  if (a.sum_g)
    for (int64_t c = 0; c < d.c; ++c) {
      a.sum_g[c] = static_cast<float>(sg[c]);
      a.sum_gxhat[c] = static_cast<float>(sgx[c]);
    }
  const double inv_m = 1.0 / static_cast<double>(d.n * d.hw);
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c) {
      const float scale = (a.weight ? a.weight[c] : 1.f) * is[c];
      for (int64_t i = 0; i < d.hw; ++i) {
        const int64_t k = (n * d.c + c) * d.hw + i;
        if (a.training) {
          const double xhat = (a.x[k] - mu[c]) * is[c];
          a.grad_in[k] = static_cast<float>(scale * (g[k] - sg[c] * inv_m - xhat * sgx[c] * inv_m));
        } else {
          a.grad_in[k] = scale * g[k];
        }
      }
    }
}

// The NHWC bf16 op's CPU reference (kernels/batchnorm.h): the f32 reference on the widened
// values viewed as {rows, C, 1}, each output rounded to bf16 once.
std::vector<float> widen(const uint16_t* v, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = bf16_to_float(v[i]);
  return out;
}
void round_into(const std::vector<float>& v, uint16_t* out) {
  for (size_t i = 0; i < v.size(); ++i) out[i] = float_to_bf16(v[i]);
}

void forward_nhwc_cpu(const BatchNormNhwcForwardArgs& a) {
  const std::vector<float> x = widen(a.x, a.rows * a.c);
  std::vector<float> out(x.size());
  BatchNormForwardArgs f{};
  f.s = {a.rows, a.c, 1};
  f.training = a.training;
  f.momentum = a.momentum;
  f.eps = a.eps;
  f.x = x.data();
  f.weight = a.weight;
  f.bias = a.bias;
  f.running_mean = a.running_mean;
  f.running_var = a.running_var;
  f.out = out.data();
  f.mean = a.mean;
  f.invstd = a.invstd;
  f.relu = a.relu;
  forward_cpu(f);
  round_into(out, a.out);
}

void backward_nhwc_cpu(const BatchNormNhwcBackwardArgs& a) {
  const std::vector<float> x = widen(a.x, a.rows * a.c), g = widen(a.grad_out, a.rows * a.c);
  std::vector<float> grad_in(x.size());
  BatchNormBackwardArgs b{};
  b.s = {a.rows, a.c, 1};
  b.training = a.training;
  b.grad_out = g.data();
  b.x = x.data();
  b.mean = a.mean;
  b.invstd = a.invstd;
  b.weight = a.weight;
  b.bias = a.bias;
  b.sum_g = a.sum_g;
  b.sum_gxhat = a.sum_gxhat;
  b.grad_in = grad_in.data();
  b.relu = a.relu;
  backward_cpu(b);
  round_into(grad_in, a.grad_in);
}

}  // namespace

void batch_norm_finish_channel(int64_t c, double mu, double var, double m, float momentum, float eps, float* mean,
                               float* invstd, float* running_mean, float* running_var) {
  mean[c] = static_cast<float>(mu);
  invstd[c] = static_cast<float>(1.0 / std::sqrt(var + eps));
  if (running_mean) {
    float& rm = running_mean[c];
    float& rv = running_var[c];
    rm = static_cast<float>((1.0 - momentum) * rm + momentum * mu);
    rv = static_cast<float>((1.0 - momentum) * rv + momentum * var * m / (m - 1.0));
  }
}

BatchNormResult batch_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& running_mean,
                                   Tensor& running_var, bool training, float momentum, float eps, bool relu) {
  const char* op = "batch_norm";
  const BatchNormShape d = dims_of(op, x);
  check_channel_vector(op, "weight", weight, x, d.c);
  check_channel_vector(op, "bias", bias, x, d.c);
  check_channel_vector(op, "running_mean", running_mean, x, d.c);
  check_channel_vector(op, "running_var", running_var, x, d.c);
  MDQ_CHECK(running_mean.defined() == running_var.defined(),
            op << ": running_mean and running_var must both be given or both be undefined");
  MDQ_CHECK(training || running_mean.defined(), op << ": evaluation mode needs running statistics");
  const int64_t m = d.n * d.hw;
  MDQ_CHECK(!training || m > 1, op << ": training needs more than one value per channel, got x " << x.describe());

  BatchNormResult r{Tensor::empty(x.shape(), x.dtype(), x.device()), Tensor::empty({d.c}, DType::F32, x.device()),
                    Tensor::empty({d.c}, DType::F32, x.device())};
  // The fields both forms share; then the form's own (kernels/batchnorm.h).
  auto common = [&](auto& a) {
    a.training = training;
    a.momentum = momentum;
    a.eps = eps;
    a.weight = ptr_or_null(weight);
    a.bias = ptr_or_null(bias);
    a.running_mean = mutable_ptr_or_null(running_mean);
    a.running_var = mutable_ptr_or_null(running_var);
    a.mean = r.mean.data<float>();
    a.invstd = r.invstd.data<float>();
    a.relu = relu;
  };
  if (is_nhwc_bf16(x)) {
    BatchNormNhwcForwardArgs a{};
    common(a);
    a.rows = d.n;
    a.c = d.c;
    a.x = x.data<uint16_t>();
    a.out = r.out.data<uint16_t>();
    dispatch(op, x.device(), forward_nhwc_cpu, &CudaBackend::batch_norm_forward_nhwc_bf16)(a);
    return r;
  }
  BatchNormForwardArgs a{};
  common(a);
  a.s = d;
  a.x = x.data<float>();
  a.out = r.out.data<float>();
  dispatch(op, x.device(), forward_cpu, &CudaBackend::batch_norm_forward_f32)(a);
  return r;
}

BatchNormGrads batch_norm_backward(const Tensor& grad_out, const Tensor& x, const Tensor& weight, const Tensor& bias,
                                   const Tensor& mean, const Tensor& invstd, bool training, bool relu) {
  const char* op = "batch_norm_backward";
  const BatchNormShape d = dims_of(op, x);
  check_dtype(op, grad_out, x.dtype());
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
  BatchNormGrads grads{Tensor::empty(x.shape(), x.dtype(), x.device()), weight.defined() ? sum_gxhat : Tensor(),
                       bias.defined() ? sum_g : Tensor()};
  auto common = [&](auto& a) {
    a.training = training;
    a.mean = mean.data<float>();
    a.invstd = invstd.data<float>();
    a.weight = ptr_or_null(weight);
    a.bias = ptr_or_null(bias);
    a.relu = relu;
    a.sum_g = mutable_ptr_or_null(sum_g);
    a.sum_gxhat = mutable_ptr_or_null(sum_gxhat);
  };
  if (is_nhwc_bf16(x)) {
    BatchNormNhwcBackwardArgs a{};
    common(a);
    a.rows = d.n;
    a.c = d.c;
    a.grad_out = grad_out.data<uint16_t>();
    a.x = x.data<uint16_t>();
    a.grad_in = grads.grad_input.data<uint16_t>();
    dispatch(op, x.device(), backward_nhwc_cpu, &CudaBackend::batch_norm_backward_nhwc_bf16)(a);
    return grads;
  }
  BatchNormBackwardArgs a{};
  common(a);
  a.s = d;
  a.grad_out = grad_out.data<float>();
  a.x = x.data<float>();
  a.grad_in = grads.grad_input.data<float>();
  dispatch(op, x.device(), backward_cpu, &CudaBackend::batch_norm_backward_f32)(a);
  return grads;
}

}  // namespace mdq::ops

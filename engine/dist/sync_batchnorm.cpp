// Sync BN: the CPU path (double sums in the order of engine/ops/batchnorm.cpp's reference, so one
// rank's statistics are bit for bit the single-process ones, and N ranks' differ only by how the
// double partial sums are grouped), the autograd wrapper and the nn::BatchNorm2d switch.
#include "engine/dist/sync_batchnorm.h"

#include <vector>

#include "engine/dist/sync_batchnorm_cuda.h"
#include "engine/nn/batchnorm.h"
#include "engine/nn/functional.h"

namespace mdq::dist {
namespace {

struct Dims {
  int64_t n, c, hw;
  int64_t at(int64_t n_, int64_t c_, int64_t i) const { return (n_ * c + c_) * hw + i; }
};

Dims dims_of(const Tensor& x) {
  check_dtype("sync_batch_norm", x, DType::F32);
  MDQ_CHECK(x.ndim() == 4 || x.ndim() == 2, "sync_batch_norm: expected x as [N, C, H, W] or [N, C], got " << x.describe());
  return {x.dim(0), x.dim(1), x.ndim() == 4 ? x.dim(2) * x.dim(3) : 1};
}

Tensor forward_cpu(Communicator& comm, const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& running_mean,
                   Tensor& running_var, float momentum, float eps, bool relu, SyncBnSaved& saved) {
  const Dims d = dims_of(x);
  saved.relu = relu;
  const float* px = x.data<float>();
  std::vector<double> sum(static_cast<size_t>(d.c) + 1, 0.0), sq(static_cast<size_t>(d.c), 0.0);
  for (int64_t c = 0; c < d.c; ++c)
    for (int64_t n = 0; n < d.n; ++n)
      for (int64_t i = 0; i < d.hw; ++i) sum[c] += px[d.at(n, c, i)];
  sum[d.c] = static_cast<double>(d.n * d.hw);
  comm.all_reduce_sum(sum.data(), d.c + 1);
  const double m = sum[d.c];
  MDQ_CHECK(m > 1, "sync_batch_norm: training needs more than one value per channel over all ranks, got " << m);
  for (int64_t c = 0; c < d.c; ++c) {
    const double mu = sum[c] / m;
    for (int64_t n = 0; n < d.n; ++n)
      for (int64_t i = 0; i < d.hw; ++i) {
        const double dev = px[d.at(n, c, i)] - mu;
        sq[c] += dev * dev;
      }
  }
  comm.all_reduce_sum(sq.data(), d.c);
  saved.count = m;
  saved.mean = Tensor::empty({d.c});
  saved.invstd = Tensor::empty({d.c});
  float* mean = saved.mean.data<float>();
  float* invstd = saved.invstd.data<float>();
  float* rm = running_mean.defined() ? running_mean.data<float>() : nullptr;
  float* rv = running_var.defined() ? running_var.data<float>() : nullptr;
  for (int64_t c = 0; c < d.c; ++c)
    ops::batch_norm_finish_channel(c, sum[c] / m, sq[c] / m, m, momentum, eps, mean, invstd, rm, rv);
  const float* w = weight.defined() ? weight.data<float>() : nullptr;
  const float* b = bias.defined() ? bias.data<float>() : nullptr;
  Tensor out = Tensor::empty(x.shape());
  float* po = out.data<float>();
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c)
      for (int64_t i = 0; i < d.hw; ++i) {
        const int64_t k = d.at(n, c, i);
        const float pre = ops::batch_norm_pre(px[k], mean[c], invstd[c], w ? w[c] : 1.f, b ? b[c] : 0.f);
        po[k] = relu && pre < 0.f ? 0.f : pre;
      }
  return out;
}

ops::BatchNormGrads backward_cpu(Communicator& comm, const Tensor& grad_out, const Tensor& x, const Tensor& weight,
                                 const Tensor& bias, const SyncBnSaved& saved) {
  const Dims d = dims_of(x);
  const float* px = x.data<float>();
  const float* mu = saved.mean.data<float>();
  const float* is = saved.invstd.data<float>();
  const float* w = weight.defined() ? weight.data<float>() : nullptr;
  const float* g = grad_out.data<float>();
  Tensor masked;  // relu: g 1[pre > 0], pre as the forward computed it
  if (saved.relu) {
    masked = Tensor::empty(x.shape());
    const float* b = bias.defined() ? bias.data<float>() : nullptr;
    float* pm = masked.data<float>();
    for (int64_t n = 0; n < d.n; ++n)
      for (int64_t c = 0; c < d.c; ++c)
        for (int64_t i = 0; i < d.hw; ++i) {
          const int64_t k = d.at(n, c, i);
          pm[k] = ops::batch_norm_pre(px[k], mu[c], is[c], w ? w[c] : 1.f, b ? b[c] : 0.f) > 0.f ? g[k] : 0.f;
        }
    g = pm;
  }
  std::vector<double> sums(2 * static_cast<size_t>(d.c), 0.0);  // [sum g | sum g xhat]
  double* sg = sums.data();
  double* sgx = sg + d.c;
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c)
      for (int64_t i = 0; i < d.hw; ++i) {
        const int64_t k = d.at(n, c, i);
        sg[c] += g[k];
        sgx[c] += static_cast<double>(g[k]) * ((px[k] - mu[c]) * is[c]);
      }
  ops::BatchNormGrads grads;
  auto local = [&](const double* v) {  // dweight, dbias: this rank's sums (see sync_batchnorm.h)
    Tensor t = Tensor::empty({d.c});
    for (int64_t c = 0; c < d.c; ++c) t.data<float>()[c] = static_cast<float>(v[c]);
    return t;
  };
  if (weight.defined()) grads.grad_weight = local(sgx);
  if (bias.defined()) grads.grad_bias = local(sg);
  comm.all_reduce_sum(sums.data(), 2 * d.c);
  const double inv_m = 1.0 / saved.count;
  grads.grad_input = Tensor::empty(x.shape());
  float* dx = grads.grad_input.data<float>();
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c) {
      const float scale = (w ? w[c] : 1.f) * is[c];
      for (int64_t i = 0; i < d.hw; ++i) {
        const int64_t k = d.at(n, c, i);
        const double xhat = (px[k] - mu[c]) * is[c];
        dx[k] = static_cast<float>(scale * (g[k] - sg[c] * inv_m - xhat * sgx[c] * inv_m));
      }
    }
  return grads;
}

}  // namespace

Var sync_batch_norm(Communicator& comm, const Var& x, const Var& weight, const Var& bias, Tensor& running_mean,
                    Tensor& running_var, float momentum, float eps, bool relu) {
  const Tensor& xv = x.value();
  MDQ_CHECK(xv.device() == comm.device(), "sync_batch_norm: x is on " << device_name(xv.device())
                                                                      << ", the communicator on "
                                                                      << device_name(comm.device()));
  const Tensor w = weight.defined() ? weight.value() : Tensor();
  const Tensor b = bias.defined() ? bias.value() : Tensor();
  auto saved = std::make_shared<SyncBnSaved>();
  Tensor out = xv.is_cuda()
                   ? sync_bn_forward_cuda(comm, xv, w, b, running_mean, running_var, momentum, eps, relu, *saved)
                   : forward_cpu(comm, xv, w, b, running_mean, running_var, momentum, eps, relu, *saved);
  Var result = nn::make_output(out, {&x, &weight, &bias});
  if (result.requires_grad()) {
    Communicator* c = &comm;
    record_backward([c, x, weight, bias, result = GradRef(result), saved]() {
      // Every rank reaches this closure (same graph), so the collective inside stays matched.
      MDQ_CHECK(result.has_grad(), "sync_batch_norm: its output got no gradient (the other ranks wait for this one)");
      const Tensor wv = weight.defined() ? weight.value() : Tensor();
      const Tensor bv = bias.defined() ? bias.value() : Tensor();
      const Tensor& xv2 = x.value();
      ops::BatchNormGrads g = xv2.is_cuda() ? sync_bn_backward_cuda(*c, result.grad(), xv2, wv, bv, *saved)
                                            : backward_cpu(*c, result.grad(), xv2, wv, bv, *saved);
      if (x.requires_grad()) x.accumulate_grad(g.grad_input);
      if (weight.requires_grad()) weight.accumulate_grad(g.grad_weight);
      if (bias.requires_grad()) bias.accumulate_grad(g.grad_bias);
    });
  }
  return result;
}

SyncBatchNormScope::SyncBatchNormScope(Communicator& comm) {
  Communicator* c = &comm;
  nn::set_training_batch_norm([c](const Var& x, const Var& w, const Var& b, Tensor& rm, Tensor& rv, float momentum,
                                  float eps, bool relu) { return sync_batch_norm(*c, x, w, b, rm, rv, momentum, eps, relu); });
}

SyncBatchNormScope::~SyncBatchNormScope() { nn::set_training_batch_norm(nullptr); }

}  // namespace mdq::dist

// Sync BN on the GPU: partial sums, all-reduce on the engine's stream, finalize, apply; no host
// wait. The reduced counts stay on the device (sums[C]), so ranks may hold batches of any size.
#include <cuda_runtime.h>

#include "kernels/cuda_common.h"
#include "engine/dist/sync_batchnorm_cuda.h"
#include "kernels/batchnorm.h"

namespace mdq::dist {
namespace {

kernels::BatchNormShape shape_of(const Tensor& x) {
  return {x.dim(0), x.dim(1), x.ndim() == 4 ? x.dim(2) * x.dim(3) : 1};
}
const float* ptr_or_null(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }
float* mutable_ptr_or_null(Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

// A [C] copy of C floats at `src` (device), so a result can outlive the buffer it came from.
Tensor channel_copy(const float* src, int64_t c) {
  Tensor t = Tensor::empty({c}, DType::F32, Device::CUDA);
  CUDA_CHECK(cudaMemcpyAsync(t.raw(), src, static_cast<size_t>(c) * sizeof(float), cudaMemcpyDeviceToDevice,
                             cuda::stream()));
  return t;
}

}  // namespace

Tensor sync_bn_forward_cuda(Communicator& comm, const Tensor& x, const Tensor& weight, const Tensor& bias,
                            Tensor& running_mean, Tensor& running_var, float momentum, float eps, bool relu,
                            SyncBnSaved& saved) {
  const kernels::BatchNormShape s = shape_of(x);
  saved.relu = relu;
  saved.sums = Tensor::empty({s.c + 1}, DType::F32, Device::CUDA);
  kernels::sync_bn_partial_sums_f32(s, x.data<float>(), nullptr, saved.sums.data<float>());
  comm.all_reduce_sum(saved.sums.data<float>(), s.c + 1);
  Tensor sumsq = Tensor::empty({s.c + 1}, DType::F32, Device::CUDA);
  kernels::sync_bn_partial_sums_f32(s, x.data<float>(), saved.sums.data<float>(), sumsq.data<float>());
  comm.all_reduce_sum(sumsq.data<float>(), s.c);
  saved.mean = Tensor::empty({s.c}, DType::F32, Device::CUDA);
  saved.invstd = Tensor::empty({s.c}, DType::F32, Device::CUDA);
  kernels::sync_bn_finalize_f32(s.c, saved.sums.data<float>(), sumsq.data<float>(), eps, momentum,
                                saved.mean.data<float>(), saved.invstd.data<float>(), mutable_ptr_or_null(running_mean),
                                mutable_ptr_or_null(running_var));
  Tensor out = Tensor::empty(x.shape(), DType::F32, Device::CUDA);
  kernels::batch_norm_apply_f32(s, x.data<float>(), saved.mean.data<float>(), saved.invstd.data<float>(),
                                ptr_or_null(weight), ptr_or_null(bias), relu, out.data<float>());
  return out;
}

ops::BatchNormGrads sync_bn_backward_cuda(Communicator& comm, const Tensor& grad_out, const Tensor& x,
                                          const Tensor& weight, const Tensor& bias, const SyncBnSaved& saved) {
  const kernels::BatchNormShape s = shape_of(x);
  Tensor sums = Tensor::empty({2 * s.c}, DType::F32, Device::CUDA);  // [sum g | sum g xhat]
  float* sum_g = sums.data<float>();
  float* sum_gxhat = sum_g + s.c;
  kernels::batch_norm_backward_reduce_f32(s, grad_out.data<float>(), x.data<float>(), saved.mean.data<float>(),
                                          saved.invstd.data<float>(), ptr_or_null(weight), ptr_or_null(bias),
                                          saved.relu, sum_g, sum_gxhat);
  ops::BatchNormGrads g;
  if (weight.defined()) g.grad_weight = channel_copy(sum_gxhat, s.c);  // local: averaged with the other grads
  if (bias.defined()) g.grad_bias = channel_copy(sum_g, s.c);
  comm.all_reduce_sum(sum_g, 2 * s.c);
  kernels::sync_bn_rescale_f32(2 * s.c, sum_g, static_cast<float>(s.n * s.hw), saved.sums.data<float>() + s.c);
  g.grad_input = Tensor::empty(x.shape(), DType::F32, Device::CUDA);
  kernels::batch_norm_backward_input_f32(s, true, grad_out.data<float>(), x.data<float>(), saved.mean.data<float>(),
                                         saved.invstd.data<float>(), ptr_or_null(weight), ptr_or_null(bias),
                                         saved.relu, sum_g, sum_gxhat, g.grad_input.data<float>());
  return g;
}

}  // namespace mdq::dist

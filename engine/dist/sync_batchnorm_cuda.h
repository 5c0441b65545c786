// The CUDA half of sync BN (sync_batchnorm.h), compiled with NCCL (with_nccl/) since CUDA ranks
// talk through it; without_nccl/ stands in otherwise. Kernels: kernels/batchnorm.h (sync_bn_*).
#pragma once
#include "engine/dist/communicator.h"
#include "engine/ops/batchnorm.h"

namespace mdq::dist {

struct SyncBnSaved {
  Tensor mean, invstd;  // [C], what normalised x
  Tensor sums;          // CUDA: reduced [C + 1] first-pass sums, sums[C] = the global count M
  double count = 0;     // CPU: the global count M
  bool relu = false;    // the forward fused a ReLU (engine/ops/batchnorm.h): backward masks g
};

Tensor sync_bn_forward_cuda(Communicator& comm, const Tensor& x, const Tensor& weight, const Tensor& bias,
                            Tensor& running_mean, Tensor& running_var, float momentum, float eps, bool relu,
                            SyncBnSaved& saved);
ops::BatchNormGrads sync_bn_backward_cuda(Communicator& comm, const Tensor& grad_out, const Tensor& x,
                                          const Tensor& weight, const Tensor& bias, const SyncBnSaved& saved);

}  // namespace mdq::dist

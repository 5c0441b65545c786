// BatchNorm with statistics over every rank's batch (mdq-train --sync-bn). Without it each rank
// normalises by its own batch/N images; with it N ranks normalise exactly as one process with
// the whole batch would (on the CPU, bit for bit in the statistics: the same double sums).
//
// Training mode, math as engine/ops/batchnorm.h with sums over all ranks:
//   forward:  S1 = allreduce(sum x, M); mean = S1/M; S2 = allreduce(sum (x - mean)^2); var = S2/M
//             (two passes, like the single-rank kernels: no E[x^2] - E[x]^2 cancellation);
//             running statistics from the global mean and var (unbiased with the global M).
//   backward: allreduce(sum g, sum g xhat) over M, then dx as for one rank. dweight and dbias
//             stay the local sums: the gradient reducer averages them like every other gradient,
//             and the loss each rank differentiates is its own batch's share.
//   relu:     a fused ReLU as in engine/ops/batchnorm.h (out = max(0, pre); backward on
//             g 1[pre > 0] with pre recomputed by the single-rank expression), so BatchNorm2d's
//             fuse_relu holds under --sync-bn too.
// Collective: every rank runs the same layers in the same order (forward and backward).
#pragma once
#include "engine/autograd.h"
#include "engine/dist/communicator.h"

namespace mdq::dist {

Var sync_batch_norm(Communicator& comm, const Var& x, const Var& weight, const Var& bias, Tensor& running_mean,
                    Tensor& running_var, float momentum, float eps, bool relu = false);

// While alive, every nn::BatchNorm2d in training mode normalises with sync_batch_norm over comm.
class SyncBatchNormScope {
 public:
  explicit SyncBatchNormScope(Communicator& comm);
  ~SyncBatchNormScope();
  SyncBatchNormScope(const SyncBatchNormScope&) = delete;
  SyncBatchNormScope& operator=(const SyncBatchNormScope&) = delete;
};

}  // namespace mdq::dist

// NCCL: the transport for CUDA tensors (gradients, sync-BN statistics) between the GPUs of one
// machine or of several. Implemented in with_nccl/ when CMake found NCCL (and CUDA), in
// without_nccl/ otherwise (then make_nccl_communicator throws, naming what to install).
#pragma once
#include <cstddef>
#include <functional>
#include <memory>

#include "engine/dist/communicator.h"

namespace mdq::dist {

struct NcclSetup {
  int rank = 0, size = 1;
  int local_rank = 0;  // this rank's GPU on its machine
  // Sends rank 0's bytes to every rank (the NCCL unique id): MPI_Bcast under mpirun, a pipe under
  // mdq-train --gpus N. Not called when size == 1.
  std::function<void(void* bytes, size_t n)> share_from_rank0;
  double timeout_s = 300;  // a collective pending longer ends the rank (see watchdog.h)
};

bool nccl_built();
// Binds this process to GPU local_rank (before any other CUDA work, so no context is made on
// GPU 0 by every rank), joins the ranks and returns the CUDA communicator: collectives on the
// engine's stream, gradient means on a high-priority side stream, NCCL's asynchronous errors and
// operations pending longer than timeout_s end the rank with a message (ncclCommAbort first).
std::unique_ptr<Communicator> make_nccl_communicator(const NcclSetup& setup);

}  // namespace mdq::dist

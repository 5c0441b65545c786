// The one decision of how this process joins a data-parallel run: as a rank forked by the --gpus
// launcher (NCCL; unique id over the launcher's pipe), as an mpirun rank (NCCL bootstrapped over
// MPI for CUDA, MPI host memory for the CPU), or alone (nullptr: nothing to join).
#pragma once
#include <memory>

#include "engine/dist/communicator.h"

namespace mdq::dist {

std::unique_ptr<Communicator> join_ranks(Device device, double timeout_s);

}  // namespace mdq::dist

// Stands in for with_nccl/ when CMake found no NCCL (or no CUDA): says so and what to install.
#include "engine/dist/nccl.h"
#include "common/error.h"

namespace mdq::dist {

bool nccl_built() { return false; }

std::unique_ptr<Communicator> make_nccl_communicator(const NcclSetup&) {
  MDQ_FAIL("mdq was built without NCCL: training on GPUs with several ranks (mdq-train --gpus N, or mpirun with "
           "--device cuda) needs it. NCCL comes with the CUDA toolkit or as libnccl-dev: install it and rebuild "
           "(CMake prints 'mdq: NCCL ... found'), or train on the CPU ranks with --device cpu");
}

}  // namespace mdq::dist

// Is this process a rank started by an MPI launcher? Decided from the environment alone, so a
// build without MPI can still say "you ran me under mpirun, but I was built without MPI".
#include <cstdlib>

#include "engine/dist/mpi.h"

namespace mdq::dist {

bool started_by_mpi_launcher() {
  // OpenMPI's mpirun, MPICH/Hydra's mpiexec and srun --mpi=pmi2, srun --mpi=pmix.
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(var) != nullptr) return true;
  return false;
}

}  // namespace mdq::dist

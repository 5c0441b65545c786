// MPI as the launcher of a data-parallel run (`mpirun -np N mdq-train ...`, one rank per GPU or
// per CPU process, across machines with a host file) and as the CPU transport (host memory).
// Implemented in with_mpi/ when CMake found MPI, in without_mpi/ otherwise (every call but
// mpi_built() and started_by_mpi_launcher() then throws, naming what to install).
#pragma once
#include <cstddef>
#include <memory>

#include "engine/dist/communicator.h"

namespace mdq::dist {

bool mpi_built();
// True when an MPI launcher (mpirun/mpiexec of OpenMPI or MPICH, srun with PMI) started this
// process, read from the variables it sets; no MPI call is made.
bool started_by_mpi_launcher();

struct MpiWorld {
  int rank = 0, size = 1;
  int local_rank = 0, local_size = 1;  // among the ranks on this machine: picks the GPU
};
// Initialises MPI once per process (MPI_THREAD_FUNNELED; MPI_Finalize runs at exit) and
// describes the world. Later calls return the same answer.
MpiWorld mpi_world();
// Host-memory communicator over MPI_COMM_WORLD (CPU training). A collective that blocks longer
// than timeout_s ends this rank with a message, and mpirun then stops the others.
std::unique_ptr<Communicator> make_mpi_communicator(double timeout_s);
// Root's bytes to every rank, blocking, under the same timeout (shares the NCCL unique id).
void mpi_broadcast_bytes(void* data, size_t bytes, int root, double timeout_s);

}  // namespace mdq::dist

namespace mdq::dist {
// After an error on this rank: when MPI is initialised, MPI_Abort(MPI_COMM_WORLD, code), which
// stops every rank at once (the others may be waiting in a collective); otherwise nothing.
void mpi_abort_if_running(int code);
}  // namespace mdq::dist

// Stands in for with_mpi/ when CMake found no MPI: every entry point says so and what to install.
#include "engine/dist/mpi.h"
#include "common/error.h"

namespace mdq::dist {
namespace {

[[noreturn]] void missing() {
  MDQ_FAIL("mdq was built without MPI: running under mpirun (or mpiexec/srun) needs it. Install it "
           "(apt-get install libopenmpi-dev openmpi-bin) and rebuild; on one machine with GPUs, "
           "`mdq-train --gpus N` needs no MPI");
}

}  // namespace

bool mpi_built() { return false; }
MpiWorld mpi_world() { missing(); }
std::unique_ptr<Communicator> make_mpi_communicator(double) { missing(); }
void mpi_broadcast_bytes(void*, size_t, int, double) { missing(); }

}  // namespace mdq::dist

namespace mdq::dist {
void mpi_abort_if_running(int) {}
}  // namespace mdq::dist

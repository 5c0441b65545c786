#include "engine/dist/join.h"

#include "engine/device.h"
#include "engine/dist/local_launcher.h"
#include "engine/dist/mpi.h"
#include "engine/dist/nccl.h"
#include "common/error.h"

namespace mdq::dist {

std::unique_ptr<Communicator> join_ranks(Device device, double timeout_s) {
  NcclSetup s;
  s.timeout_s = timeout_s;
  const LocalRank& local = local_rank();
  if (local.rank >= 0) {
    MDQ_CHECK(device == Device::CUDA, "--gpus trains on GPUs, but this rank's device is "
                                          << device_name(device) << " (" << cuda_unavailable_reason()
                                          << "); for CPU ranks use mpirun -np N with --device cpu");
    s.rank = s.local_rank = local.rank;
    s.size = local.size;
    s.share_from_rank0 = [timeout_s](void* bytes, size_t n) { local_share_from_rank0(bytes, n, timeout_s); };
    return make_nccl_communicator(s);
  }
  if (!started_by_mpi_launcher()) return nullptr;
  const MpiWorld w = mpi_world();  // throws "built without MPI" in such a build
  if (device == Device::CPU) return make_mpi_communicator(timeout_s);
  s.rank = w.rank;
  s.size = w.size;
  s.local_rank = w.local_rank;
  s.share_from_rank0 = [timeout_s](void* bytes, size_t n) { mpi_broadcast_bytes(bytes, n, 0, timeout_s); };
  return make_nccl_communicator(s);
}

}  // namespace mdq::dist

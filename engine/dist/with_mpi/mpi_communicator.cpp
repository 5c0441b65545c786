// MPI: the launcher's world, the NCCL bootstrap broadcast and the host-memory communicator.
#include <mpi.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "engine/dist/mpi.h"
#include "engine/dist/watchdog.h"
#include "common/error.h"

namespace mdq::dist {
namespace {

void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  MDQ_FAIL("MPI call failed: " << call << ": " << std::string(msg, static_cast<size_t>(len)));
}

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

// MPI counts are int: larger buffers go in pieces.
template <class F>
void in_pieces(int64_t n, F&& body) {
  for (int64_t done = 0; done < n;) {
    const int count = static_cast<int>(std::min<int64_t>(n - done, INT_MAX / 8));
    body(done, count);
    done += count;
  }
}

void broadcast_blocking(void* data, int64_t bytes, int root) {
  in_pieces(bytes, [&](int64_t off, int count) {
    check(MPI_Bcast(static_cast<char*>(data) + off, count, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
  });
}

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(double timeout_s) : world_(mpi_world()), watchdog_(world_.rank, timeout_s) {}

  int rank() const override { return world_.rank; }
  int size() const override { return world_.size; }
  Device device() const override { return Device::CPU; }
  std::string describe() const override {
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(version, &len);
    std::string v(version, static_cast<size_t>(len));
    v = v.substr(0, v.find_first_of(",\n"));
    return v + ", rank " + std::to_string(world_.rank) + " of " + std::to_string(world_.size) + ", host memory";
  }

  void all_reduce_sum(float* data, int64_t n) override { reduce(data, n, MPI_FLOAT); }
  void all_reduce_sum(double* data, int64_t n) override { reduce(data, n, MPI_DOUBLE); }
  void broadcast(void* data, int64_t bytes, int root) override {
    Watchdog::Section s(watchdog_, "MPI_Bcast");
    broadcast_blocking(data, bytes, root);
  }

  void start_mean(float* data, int64_t n) override {
    in_pieces(n, [&](int64_t off, int count) {
      MPI_Request r;
      check(MPI_Iallreduce(MPI_IN_PLACE, data + off, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &r), "MPI_Iallreduce");
      pending_.push_back(r);
    });
    means_.emplace_back(data, n);
  }
  void finish_means() override {
    {
      Watchdog::Section s(watchdog_, "MPI_Waitall on the gradient buckets' MPI_Iallreduce");
      check(MPI_Waitall(static_cast<int>(pending_.size()), pending_.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
    }
    const float ranks = static_cast<float>(world_.size);
    for (auto& [data, n] : means_)
      for (int64_t i = 0; i < n; ++i) data[i] /= ranks;
    pending_.clear();
    means_.clear();
  }

  void all_reduce_sum_host(double* data, int64_t n) override { reduce(data, n, MPI_DOUBLE); }
  void broadcast_host(void* data, int64_t bytes, int root) override { broadcast(data, bytes, root); }
  void barrier() override {
    Watchdog::Section s(watchdog_, "MPI_Barrier");
    check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
  }
  [[noreturn]] void abort(const std::string& why) override {
    std::fprintf(stderr, "\nmdq rank %d: %s\n", world_.rank, why.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, kExitRankFailure);
    std::_Exit(kExitRankFailure);
  }

 private:
  template <class T>
  void reduce(T* data, int64_t n, MPI_Datatype type) {
    Watchdog::Section s(watchdog_, "MPI_Allreduce");
    in_pieces(n, [&](int64_t off, int count) {
      check(MPI_Allreduce(MPI_IN_PLACE, data + off, count, type, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
    });
  }

  MpiWorld world_;
  Watchdog watchdog_;
  std::vector<MPI_Request> pending_;
  std::vector<std::pair<float*, int64_t>> means_;
};

}  // namespace

bool mpi_built() { return true; }

MpiWorld mpi_world() {
  static const MpiWorld world = [] {
    int initialized = 0;
    check(MPI_Initialized(&initialized), "MPI_Initialized");
    if (!initialized) {
      // On the GPU MPI carries only the start (NCCL's unique id) and a few small host sums; NCCL
      // moves the gradients. With OpenMPI's UCX components a one-rank training on an H200 host ran
      // at 12-18k img/s, with ob1 at 20k, as the plain run
      // (benchmarks/results/2026-12-01-h200-data-parallel-one-gpu.txt), so mdq asks for ob1
      // unless the user chose (mpirun --mca pml/osc sets these variables, which stay as set).
      setenv("OMPI_MCA_pml", "ob1", /*overwrite=*/0);
      setenv("OMPI_MCA_osc", "^ucx", 0);
      int provided = 0;  // only the training thread calls MPI (the watchdog never does)
      check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
      std::atexit(finalize_at_exit);
    }
    // Errors come back as codes (turned into mdq::Error naming the call) instead of killing the job silently.
    check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    MpiWorld w;
    check(MPI_Comm_rank(MPI_COMM_WORLD, &w.rank), "MPI_Comm_rank");
    check(MPI_Comm_size(MPI_COMM_WORLD, &w.size), "MPI_Comm_size");
    MPI_Comm local;
    check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w.rank, MPI_INFO_NULL, &local),
          "MPI_Comm_split_type");
    check(MPI_Comm_rank(local, &w.local_rank), "MPI_Comm_rank");
    check(MPI_Comm_size(local, &w.local_size), "MPI_Comm_size");
    MPI_Comm_free(&local);
    return w;
  }();
  return world;
}

std::unique_ptr<Communicator> make_mpi_communicator(double timeout_s) {
  return std::make_unique<MpiCommunicator>(timeout_s);
}

void mpi_broadcast_bytes(void* data, size_t bytes, int root, double timeout_s) {
  Watchdog watchdog(mpi_world().rank, timeout_s);
  Watchdog::Section s(watchdog, "MPI_Bcast of the NCCL unique id");
  broadcast_blocking(data, static_cast<int64_t>(bytes), root);
}

void mpi_abort_if_running(int code) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, code);
}

}  // namespace mdq::dist

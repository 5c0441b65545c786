// How the ranks of a data-parallel run talk. One small interface, one implementation per
// transport: a single process (nothing to exchange), MPI on host memory (CPU tensors, the path
// CI tests), NCCL on device memory (CUDA tensors). The transports live in engine/dist/with_*/ and
// are compiled only when their library was found; engine/dist/without_*/ stands in otherwise.
//
// Rules every caller follows: each collective is called by every rank, in the same order (NCCL
// and MPI both deadlock otherwise); buffers live on device(): host memory for a CPU communicator,
// the GPU for a CUDA one. "Ordered" means: after the engine's work queued before the call and
// before the work queued after it; on the GPU that is the engine's stream, with no host wait.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/dtype.h"

namespace mdq::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual Device device() const = 0;
  virtual std::string describe() const = 0;  // "nccl 2.28.9, rank 1 of 4, GPU 1"

  // In-place sums over all ranks, ordered.
  virtual void all_reduce_sum(float* data, int64_t n) = 0;
  virtual void all_reduce_sum(double* data, int64_t n) = 0;
  // Root's bytes to every rank, in place, ordered.
  virtual void broadcast(void* data, int64_t bytes, int root) = 0;

  // Gradient buckets: an in-place mean over ranks that may run alongside the work queued after it
  // (GPU: on a side stream that first waits for the engine's stream; MPI: non-blocking). The
  // buffer must stay untouched until finish_means(), which orders every started mean before the
  // work queued next (GPU: the engine's stream waits on the side stream; no host wait).
  virtual void start_mean(float* data, int64_t n) = 0;
  virtual void finish_means() = 0;
  // CUDA graphs (engine/train_step.h): collectives queued while the engine's stream is captured
  // run when the graph is replayed, so the transport cannot watch them one by one (NCCL's watchdog
  // waits on events; a captured event cannot be waited on). After each replay the caller names
  // the replay here and the transport watches it as one operation. No-op without a watchdog.
  virtual void watch_replay(const char* what) { (void)what; }

  // Host-memory versions for the few numbers the loop exchanges (metrics, evaluation counts,
  // checkpoint metadata): block until the result is on the host.
  virtual void all_reduce_sum_host(double* data, int64_t n) = 0;
  virtual void broadcast_host(void* data, int64_t bytes, int root) = 0;
  // Blocks until every rank has called it.
  virtual void barrier() = 0;
  // Stops the whole run now: prints `why` (prefixed with this rank) and ends every rank (NCCL:
  // ncclCommAbort, then exit; MPI: MPI_Abort). For errors one rank cannot recover from, where
  // returning would leave the others waiting in a collective forever.
  [[noreturn]] virtual void abort(const std::string& why) = 0;
};

// One process, nothing to exchange: every collective leaves the data as it is. Host memory only
// (the grad buckets are packed by ops::copy_spans on device()); a single GPU process never installs
// the data-parallel machinery at all.
std::unique_ptr<Communicator> make_single_process_communicator();

// Convenience over broadcast_host: a string of any length from root to every rank.
void broadcast_string(Communicator& c, std::string& s, int root);

// Prints "mdq rank R: <why>" on stderr and ends the process with exit code 3 at once, without
// running destructors (they may wait on a collective that will never finish). mpirun and the
// --gpus launcher both stop the other ranks when one exits non-zero.
[[noreturn]] void die(int rank, const std::string& why);
constexpr int kExitRankFailure = 3;

}  // namespace mdq::dist

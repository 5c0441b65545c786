// NCCL communicator: CUDA tensors, the engine's stream for ordered collectives, a side stream for
// the gradient means that overlap backward, and a watchdog over every queued operation.
//
// Stream discipline (no host wait anywhere on the training path; all of it can be captured in a
// CUDA graph, the side stream joining the engine's capture through the two events):
//   ordered collective:  ncclX(..., engine stream)
//   start_mean:          engine stream --event--> side stream: ncclAllReduce(avg)
//   finish_means:        side stream --event--> engine stream (later work sees the means)
// Each operation also records a tracking event; the watchdog thread finds the oldest one that
// has not completed, and past the timeout (or on an asynchronous NCCL error) aborts the
// communicator, which releases kernels spinning on a dead peer, and ends the process.
#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <mutex>
#include <vector>

#include "kernels/cuda_common.h"
#include "engine/dist/nccl.h"
#include "engine/dist/watchdog.h"
#include "common/error.h"

#define NCCL_CHECK(call)                                                                              \
  do {                                                                                                \
    ncclResult_t mdq_r_ = (call);                                                                     \
    MDQ_CHECK(mdq_r_ == ncclSuccess, "NCCL call failed: " #call " at " __FILE__ ":" << __LINE__ << ": " \
                                         << ncclGetErrorString(mdq_r_) << " (" << ncclGetLastError(nullptr) << ")"); \
  } while (0)

namespace mdq::dist {
namespace {

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(const NcclSetup& s)
      : rank_(s.rank), size_(s.size), gpu_(s.local_rank), timeout_s_(s.timeout_s) {
    MDQ_CHECK(s.size >= 1 && s.rank >= 0 && s.rank < s.size, "NCCL: rank " << s.rank << " of " << s.size);
    int count = 0;
    CUDA_CHECK(cudaGetDeviceCount(&count));
    MDQ_CHECK(gpu_ >= 0 && gpu_ < count, "rank " << rank_ << " should use GPU " << gpu_ << " of its machine, but "
                                                 << count << " GPU(s) are visible (CUDA_VISIBLE_DEVICES): start at "
                                                 << "most one rank per GPU on each machine");
    CUDA_CHECK(cudaSetDevice(gpu_));
    ncclUniqueId id{};
    if (rank_ == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    if (size_ > 1) s.share_from_rank0(&id, sizeof id);
    watchdog_ = std::make_unique<Watchdog>(rank_, s.timeout_s, [this] { return poll(); }, [this] {
      if (ncclComm_t c = comm_.load()) ncclCommAbort(c);
    });
    {
      Watchdog::Section wait(*watchdog_, "ncclCommInitRank (joining the other ranks)");
      ncclComm_t c = nullptr;
      NCCL_CHECK(ncclCommInitRank(&c, size_, id, rank_));
      comm_.store(c);
    }
    int least = 0, greatest = 0;  // the side stream's all-reduces should not queue behind backward kernels
    CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    CUDA_CHECK(cudaStreamCreateWithPriority(&side_, cudaStreamNonBlocking, greatest));
    CUDA_CHECK(cudaEventCreateWithFlags(&engine_ready_, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&side_done_, cudaEventDisableTiming));
  }

  ~NcclCommunicator() override {
    const bool failing = std::uncaught_exceptions() > 0;
    watchdog_.reset();  // stops polling before the communicator goes away
    ncclComm_t c = comm_.exchange(nullptr);
    if (c) {
      if (failing) {
        ncclCommAbort(c);  // peers may never complete what is queued: do not wait for it
      } else {
        cudaStreamSynchronize(side_);
        cudaStreamSynchronize(cuda::stream());
        ncclCommDestroy(c);
      }
    }
    if (scratch_) cudaFree(scratch_);
    for (Tracked& t : pending_) cudaEventDestroy(t.event);
    for (cudaEvent_t e : free_events_) cudaEventDestroy(e);
    cudaEventDestroy(engine_ready_);
    cudaEventDestroy(side_done_);
    cudaStreamDestroy(side_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Device device() const override { return Device::CUDA; }
  std::string describe() const override {
    int v = 0;
    ncclGetVersion(&v);
    return "NCCL " + std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100) +
           ", rank " + std::to_string(rank_) + " of " + std::to_string(size_) + ", GPU " + std::to_string(gpu_);
  }

  void all_reduce_sum(float* data, int64_t n) override {
    NCCL_CHECK(ncclAllReduce(data, data, static_cast<size_t>(n), ncclFloat, ncclSum, comm(), cuda::stream()));
    track(cuda::stream(), "ncclAllReduce (sum, f32)");
  }
  void all_reduce_sum(double* data, int64_t n) override {
    NCCL_CHECK(ncclAllReduce(data, data, static_cast<size_t>(n), ncclDouble, ncclSum, comm(), cuda::stream()));
    track(cuda::stream(), "ncclAllReduce (sum, f64)");
  }
  void broadcast(void* data, int64_t bytes, int root) override {
    NCCL_CHECK(ncclBroadcast(data, data, static_cast<size_t>(bytes), ncclUint8, root, comm(), cuda::stream()));
    track(cuda::stream(), "ncclBroadcast");
  }

  void start_mean(float* data, int64_t n) override {
    CUDA_CHECK(cudaEventRecord(engine_ready_, cuda::stream()));  // the bucket's gradients are packed
    CUDA_CHECK(cudaStreamWaitEvent(side_, engine_ready_, 0));
    // On one rank the mean is the value itself; ncclAvg would still run NCCL's one-rank scaling
    // kernel over the bucket (a read and a write of every gradient), ncclSum in place runs none.
    const ncclRedOp_t mean = size_ == 1 ? ncclSum : ncclAvg;
    NCCL_CHECK(ncclAllReduce(data, data, static_cast<size_t>(n), ncclFloat, mean, comm(), side_));
    track(side_, "ncclAllReduce (mean) of a gradient bucket");
    means_started_ = true;
  }
  void finish_means() override {
    if (!means_started_) return;
    CUDA_CHECK(cudaEventRecord(side_done_, side_));
    CUDA_CHECK(cudaStreamWaitEvent(cuda::stream(), side_done_, 0));
    means_started_ = false;
  }
  void watch_replay(const char* what) override { track(cuda::stream(), what); }

  void all_reduce_sum_host(double* data, int64_t n) override {
    const size_t bytes = static_cast<size_t>(n) * sizeof(double);
    double* d = static_cast<double*>(scratch(bytes));
    CUDA_CHECK(cudaMemcpyAsync(d, data, bytes, cudaMemcpyHostToDevice, cuda::stream()));
    all_reduce_sum(d, n);
    CUDA_CHECK(cudaMemcpyAsync(data, d, bytes, cudaMemcpyDeviceToHost, cuda::stream()));
    CUDA_CHECK(cudaStreamSynchronize(cuda::stream()));
  }
  void broadcast_host(void* data, int64_t bytes, int root) override {
    void* d = scratch(static_cast<size_t>(bytes));
    CUDA_CHECK(cudaMemcpyAsync(d, data, static_cast<size_t>(bytes), cudaMemcpyHostToDevice, cuda::stream()));
    broadcast(d, bytes, root);
    CUDA_CHECK(cudaMemcpyAsync(data, d, static_cast<size_t>(bytes), cudaMemcpyDeviceToHost, cuda::stream()));
    CUDA_CHECK(cudaStreamSynchronize(cuda::stream()));
  }
  void barrier() override {
    double one = 1;
    all_reduce_sum_host(&one, 1);
  }
  [[noreturn]] void abort(const std::string& why) override {
    if (ncclComm_t c = comm_.exchange(nullptr)) ncclCommAbort(c);
    die(rank_, why);
  }

 private:
  struct Tracked {
    cudaEvent_t event;
    double queued_at;
    const char* what;
  };

  ncclComm_t comm() const {
    ncclComm_t c = comm_.load();
    MDQ_CHECK(c != nullptr, "NCCL: the communicator was aborted");
    return c;
  }

  // Host staging for the host-memory collectives: grows, lives on the engine's stream.
  void* scratch(size_t bytes) {
    if (bytes > scratch_bytes_) {
      if (scratch_) {
        CUDA_CHECK(cudaStreamSynchronize(cuda::stream()));
        CUDA_CHECK(cudaFree(scratch_));
      }
      CUDA_CHECK(cudaMalloc(&scratch_, bytes));
      scratch_bytes_ = bytes;
    }
    return scratch_;
  }

  // Records a tracking event after the operation just queued on `stream`, and recycles the events
  // of operations that have completed. Under a CUDA graph capture (the side stream joins the
  // engine's capture) nothing is recorded: the replay is watched instead (watch_replay).
  void track(cudaStream_t stream, const char* what) {
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
    if (capture != cudaStreamCaptureStatusNone) return;
    std::lock_guard<std::mutex> lock(mutex_);
    while (!pending_.empty() && cudaEventQuery(pending_.front().event) == cudaSuccess) {
      free_events_.push_back(pending_.front().event);
      pending_.pop_front();
    }
    cudaEvent_t e;
    if (free_events_.empty()) {
      CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    } else {
      e = free_events_.back();
      free_events_.pop_back();
    }
    CUDA_CHECK(cudaEventRecord(e, stream));
    pending_.push_back({e, seconds_now(), what});
  }

  // The watchdog's check: NCCL's asynchronous error, else the oldest unfinished operation's age.
  std::string poll() {
    thread_local bool bound = false;  // a new thread starts on GPU 0
    if (!bound) bound = cudaSetDevice(gpu_) == cudaSuccess;
    if (ncclComm_t c = comm_.load()) {
      ncclResult_t async = ncclSuccess;
      if (ncclCommGetAsyncError(c, &async) == ncclSuccess && async != ncclSuccess && async != ncclInProgress)
        return std::string("NCCL reported an asynchronous error: ") + ncclGetErrorString(async) + " (" +
               ncclGetLastError(c) + ")";
    }
    std::lock_guard<std::mutex> lock(mutex_);
    for (const Tracked& t : pending_) {
      const cudaError_t q = cudaEventQuery(t.event);
      if (q == cudaSuccess) continue;
      if (q != cudaErrorNotReady) return std::string("CUDA error while waiting for ") + t.what + ": " + cudaGetErrorString(q);
      const double age = seconds_now() - t.queued_at;
      if (age > timeout_s_) {
        char buf[256];
        std::snprintf(buf, sizeof buf, "%s has not finished after %.0f s: another rank died, hangs or stopped calling collectives",
                      t.what, age);
        return buf;
      }
      break;  // later operations were queued after this one
    }
    return "";
  }

  int rank_, size_, gpu_;
  double timeout_s_;
  std::atomic<ncclComm_t> comm_{nullptr};
  cudaStream_t side_ = nullptr;
  cudaEvent_t engine_ready_ = nullptr, side_done_ = nullptr;
  bool means_started_ = false;
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
  std::mutex mutex_;  // pending_ and free_events_, shared with the watchdog thread
  std::deque<Tracked> pending_;
  std::vector<cudaEvent_t> free_events_;
  std::unique_ptr<Watchdog> watchdog_;
};

}  // namespace

bool nccl_built() { return true; }

std::unique_ptr<Communicator> make_nccl_communicator(const NcclSetup& setup) {
  return std::make_unique<NcclCommunicator>(setup);
}

}  // namespace mdq::dist

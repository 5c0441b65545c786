// Turns a hung collective into an error. A thread checks every 50 ms (a) how long the blocking
// call in progress (a Section: MPI_Allreduce, ncclCommInitRank, ...) has been running and (b) a
// transport's own poll (NCCL: asynchronous errors, operations queued on the GPU that have not
// finished). Past the timeout, or when the poll reports a failure, it runs on_failure (e.g.
// ncclCommAbort) and ends the process with die(): a rank never waits forever on a dead peer,
// and the launcher (mpirun, or mdq-train --gpus) then stops the others.
#pragma once
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace mdq::dist {

class Watchdog {
 public:
  using Poll = std::function<std::string()>;  // "" while all is well, else why the run must stop
  Watchdog(int rank, double timeout_s, Poll poll = nullptr, std::function<void()> on_failure = nullptr);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  double timeout_s() const { return timeout_s_; }
  // Marks a blocking call that must end within the timeout. One at a time (the training thread).
  class Section {
   public:
    Section(Watchdog& w, const char* what);
    ~Section();
    Section(const Section&) = delete;
    Section& operator=(const Section&) = delete;
   private:
    Watchdog& w_;
  };

 private:
  void run();
  int rank_;
  double timeout_s_;
  Poll poll_;
  std::function<void()> on_failure_;
  std::atomic<int64_t> section_start_ns_{0};  // 0: no blocking call in progress
  std::atomic<const char*> section_what_{nullptr};
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace mdq::dist

// SIGINT/SIGTERM for long jobs (a cluster's preemption sends SIGTERM): the first signal asks the
// training loop to finish its step, save last.ckpt and exit with kExitInterrupted; a second one
// exits at once (the checkpoint on disk is still whole: saves are atomic).
#pragma once

namespace mdq::app {

constexpr int kExitDiverged = 3;      // a NaN/Inf loss or logit stopped training
constexpr int kExitInterrupted = 75;  // EX_TEMPFAIL: stopped by a signal, resumable

class StopSignal {
 public:
  StopSignal();   // installs the handlers
  ~StopSignal();  // restores the previous ones
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;
  // The signal number that asked to stop, or 0.
  static int requested();
  static const char* name(int sig);
};

}  // namespace mdq::app

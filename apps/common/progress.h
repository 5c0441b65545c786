// A one-line progress bar with rate and ETA; on a non-terminal it prints plain lines instead.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace mdq::app {

class Progress {
 public:
  Progress(int64_t total, int64_t start, bool quiet);
  // Redraws at most every 0.25 s (or every `log_lines_every` steps when not a terminal).
  void update(int64_t done, const std::string& status, double items_per_s);
  void finish();
  static std::string format_duration(double seconds);  // "1h02m", "3m12s", "45s"

 private:
  int64_t total_, start_;
  bool quiet_, tty_;
  std::chrono::steady_clock::time_point t0_, last_draw_;
};

}  // namespace mdq::app

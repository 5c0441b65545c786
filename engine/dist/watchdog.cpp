#include "engine/dist/watchdog.h"

#include <chrono>
#include <cstdio>

#include "engine/dist/communicator.h"
#include "common/error.h"

namespace mdq::dist {
namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Watchdog::Watchdog(int rank, double timeout_s, Poll poll, std::function<void()> on_failure)
    : rank_(rank), timeout_s_(timeout_s), poll_(std::move(poll)), on_failure_(std::move(on_failure)) {
  MDQ_CHECK(timeout_s > 0, "--dist-timeout must be positive, got " << timeout_s);
  thread_ = std::thread([this] { run(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

Watchdog::Section::Section(Watchdog& w, const char* what) : w_(w) {
  w_.section_what_.store(what);
  w_.section_start_ns_.store(now_ns());
}

Watchdog::Section::~Section() { w_.section_start_ns_.store(0); }

void Watchdog::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!cv_.wait_for(lock, std::chrono::milliseconds(50), [this] { return stop_; })) {
    std::string failure;
    const int64_t start = section_start_ns_.load();
    if (start != 0 && static_cast<double>(now_ns() - start) * 1e-9 > timeout_s_) {
      char buf[256];
      std::snprintf(buf, sizeof buf,
                    "%s has not finished after %g s: another rank died, hangs or stopped calling collectives",
                    section_what_.load(), timeout_s_);
      failure = buf;
    }
    if (failure.empty() && poll_) failure = poll_();
    if (failure.empty()) continue;
    if (on_failure_) on_failure_();
    die(rank_, failure + "; stopping this rank (timeout: --dist-timeout)");
  }
}

}  // namespace mdq::dist

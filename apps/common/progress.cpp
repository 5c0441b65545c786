#include "apps/common/progress.h"

#include <unistd.h>

#include <cstdio>

namespace mdq::app {

Progress::Progress(int64_t total, int64_t start, bool quiet)
    : total_(total), start_(start), quiet_(quiet), tty_(isatty(fileno(stderr)) != 0),
      t0_(std::chrono::steady_clock::now()), last_draw_(t0_) {}

std::string Progress::format_duration(double s) {
  char buf[32];
  long t = static_cast<long>(s + 0.5);
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else if (t >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%lds", t);
  return buf;
}

void Progress::update(int64_t done, const std::string& status, double items_per_s) {
  if (quiet_) return;
  auto now = std::chrono::steady_clock::now();
  double since_draw = std::chrono::duration<double>(now - last_draw_).count();
  if (tty_ ? since_draw < 0.25 : since_draw < 10.0) return;
  last_draw_ = now;
  double elapsed = std::chrono::duration<double>(now - t0_).count();
  double per_step = done > start_ ? elapsed / static_cast<double>(done - start_) : 0.0;
  double eta = per_step * static_cast<double>(total_ - done);
  const int width = 24;
  int filled = total_ > 0 ? static_cast<int>(width * done / total_) : 0;
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(width, '.');
  std::fprintf(stderr, "%s%lld/%lld [%s] %s | %.0f img/s | ETA %s%s", tty_ ? "\r" : "",
               static_cast<long long>(done), static_cast<long long>(total_), bar.c_str(), status.c_str(),
               items_per_s, format_duration(eta).c_str(), tty_ ? "   " : "\n");
  std::fflush(stderr);
}

void Progress::finish() {
  if (!quiet_ && tty_) std::fprintf(stderr, "\n");
}

}  // namespace mdq::app

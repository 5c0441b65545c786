#include "apps/common/stop_signal.h"

#include <signal.h>
#include <unistd.h>

namespace mdq::app {
namespace {

volatile sig_atomic_t g_signal = 0;
struct sigaction g_old_int, g_old_term;

void on_signal(int sig) {
  if (g_signal != 0) _exit(128 + sig);  // the second signal: at once
  g_signal = sig;
  const char msg[] = "\nmdq-train: signal received: finishing this step and saving last.ckpt (again to quit now)\n";
  (void)!write(2, msg, sizeof msg - 1);
}

}  // namespace

StopSignal::StopSignal() {
  g_signal = 0;
  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &g_old_int);
  sigaction(SIGTERM, &sa, &g_old_term);
}

StopSignal::~StopSignal() {
  sigaction(SIGINT, &g_old_int, nullptr);
  sigaction(SIGTERM, &g_old_term, nullptr);
}

int StopSignal::requested() { return g_signal; }

const char* StopSignal::name(int sig) { return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal"; }

}  // namespace mdq::app

#include "engine/dist/local_launcher.h"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"

namespace mdq::dist {
namespace {

LocalRank g_rank;
int g_share_pipe[2] = {-1, -1};  // [read, write]
// The parent's children, for the signal handler (async-signal-safe: a plain array and kill()).
constexpr int kMaxRanks = 1024;
pid_t g_children[kMaxRanks];
volatile sig_atomic_t g_child_count = 0;

void forward_signal(int sig) {
  for (int i = 0; i < g_child_count; ++i)
    if (g_children[i] > 0) kill(g_children[i], sig);
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = strsignal(sig);
    return "was killed by signal " + std::to_string(sig) + " (" + (name ? name : "?") + ")";
  }
  return "stopped (status " + std::to_string(status) + ")";
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

[[noreturn]] void run_child(int rank, int ranks, const std::function<int(int)>& job) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);  // a rank never outlives its launcher
  if (getppid() == 1) _exit(1);      // the parent died before prctl took effect
  setpgid(0, 0);  // a terminal's Ctrl-C reaches the parent only, which passes it on once
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) signal(sig, SIG_DFL);
  g_rank = LocalRank{rank, ranks};
  if (rank == 0) {
    close(g_share_pipe[0]);
    g_share_pipe[0] = -1;
  } else {
    close(g_share_pipe[1]);
    g_share_pipe[1] = -1;
  }
  int code = 1;
  try {
    code = job(rank);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mdq rank %d: error: %s\n", rank, e.what());
  }
  std::fflush(stdout);
  std::fflush(stderr);
  _exit(code);
}

}  // namespace

const LocalRank& local_rank() { return g_rank; }

int run_local_ranks(int ranks, const std::function<int(int)>& job, double grace_s) {
  MDQ_CHECK(ranks >= 1 && ranks <= kMaxRanks, "--gpus: " << ranks << " ranks (1.." << kMaxRanks << ")");
  MDQ_CHECK(g_rank.rank < 0, "run_local_ranks: called inside a rank");
  MDQ_CHECK(pipe(g_share_pipe) == 0, "run_local_ranks: pipe failed: " << std::strerror(errno));
  std::fflush(stdout);  // or the children repeat what is buffered
  std::fflush(stderr);
  std::vector<pid_t> pids;
  struct sigaction forward {}, old[3];
  forward.sa_handler = forward_signal;
  sigemptyset(&forward.sa_mask);
  const int forwarded[3] = {SIGINT, SIGTERM, SIGHUP};
  for (int i = 0; i < 3; ++i) sigaction(forwarded[i], &forward, &old[i]);
  for (int r = 0; r < ranks; ++r) {
    const pid_t pid = fork();
    if (pid == 0) run_child(r, ranks, job);
    if (pid < 0) {
      std::fprintf(stderr, "mdq: fork of rank %d failed: %s; stopping the others\n", r, std::strerror(errno));
      for (pid_t p : pids) kill(p, SIGKILL);
      for (pid_t p : pids) waitpid(p, nullptr, 0);
      for (int i = 0; i < 3; ++i) sigaction(forwarded[i], &old[i], nullptr);
      return 1;
    }
    pids.push_back(pid);
    g_children[r] = pid;
    g_child_count = r + 1;
  }
  close(g_share_pipe[0]);
  close(g_share_pipe[1]);
  g_share_pipe[0] = g_share_pipe[1] = -1;

  auto rank_of = [&](pid_t pid) {
    for (size_t i = 0; i < pids.size(); ++i)
      if (pids[i] == pid) return static_cast<int>(i);
    return -1;
  };
  int alive = ranks, result = 0;
  while (alive > 0) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    const int r = rank_of(pid);
    if (r < 0) continue;
    g_children[r] = -1;
    --alive;
    if (status == 0 || result != 0) continue;
    result = exit_code_of(status);
    if (alive == 0) break;
    std::fprintf(stderr, "\nmdq: rank %d %s; stopping the other %d rank(s)\n", r, describe_status(status).c_str(), alive);
    std::fflush(stderr);
    forward_signal(SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(grace_s);
    while (alive > 0 && std::chrono::steady_clock::now() < deadline) {
      const pid_t done = waitpid(-1, &status, WNOHANG);
      if (done > 0) {
        const int k = rank_of(done);
        if (k >= 0) {
          g_children[k] = -1;
          --alive;
        }
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    if (alive > 0) {
      std::fprintf(stderr, "mdq: %d rank(s) still running %.0f s after SIGTERM: SIGKILL\n", alive, grace_s);
      forward_signal(SIGKILL);
    }
  }
  g_child_count = 0;
  for (int i = 0; i < 3; ++i) sigaction(forwarded[i], &old[i], nullptr);
  return result;
}

void local_share_from_rank0(void* bytes, size_t n, double timeout_s) {
  MDQ_CHECK(g_rank.rank >= 0, "local_share_from_rank0: this process is not a rank forked by --gpus");
  MDQ_CHECK(n > 0 && n <= PIPE_BUF, "local_share_from_rank0: " << n << " bytes (1.." << PIPE_BUF << ")");
  if (g_rank.rank == 0) {
    MDQ_CHECK(g_share_pipe[1] >= 0, "local_share_from_rank0: rank 0 already shared");
    for (int r = 1; r < g_rank.size; ++r) {  // one atomic write (n <= PIPE_BUF) per reader
      const ssize_t w = write(g_share_pipe[1], bytes, n);
      MDQ_CHECK(w == static_cast<ssize_t>(n), "rank 0: writing to the other ranks failed: " << std::strerror(errno));
    }
    close(g_share_pipe[1]);
    g_share_pipe[1] = -1;
    return;
  }
  MDQ_CHECK(g_share_pipe[0] >= 0, "local_share_from_rank0: rank " << g_rank.rank << " already received");
  pollfd p{g_share_pipe[0], POLLIN, 0};
  const int ready = poll(&p, 1, static_cast<int>(std::min(timeout_s * 1000.0, static_cast<double>(INT_MAX))));
  MDQ_CHECK(ready > 0, "rank " << g_rank.rank << ": rank 0 sent nothing within " << timeout_s
                               << " s (--dist-timeout): it hangs or failed to start");
  const ssize_t got = read(g_share_pipe[0], bytes, n);
  MDQ_CHECK(got == static_cast<ssize_t>(n), "rank " << g_rank.rank << ": rank 0 exited before sending its NCCL id ("
                                                    << got << " of " << n << " bytes)");
  close(g_share_pipe[0]);
  g_share_pipe[0] = -1;
}

}  // namespace mdq::dist

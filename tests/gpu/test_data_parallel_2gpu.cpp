// Data parallelism on two GPUs (skipped, with the reason, on hosts with fewer): --gpus 2 and
// mpirun -np 2 train like one GPU at the same global batch (--sync-bn), and a rank that is killed
// or hangs stops the run with a message within a bounded time.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/dist/nccl.h"
#include "tests/support/run_compare.h"
#include "tests/support/toy_training.h"

using namespace mdq;

namespace {

// The GPU tolerance: each rank's BN sums and gradient means round differently from one GPU's.
constexpr float kAtol = 1e-4f, kRtol = 1e-3f;

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// mdq-train with `args` in the background, output to `log`; returns its pid.
pid_t start_training(const std::string& args, const std::string& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    const std::string cmd = "exec " + testing::binary("mdq-train") + args + " > " + log + " 2>&1";
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

// The launcher's ranks, rank 0 first (forked in rank order: increasing pids).
std::vector<pid_t> ranks_of(pid_t launcher) {
  std::istringstream in(slurp("/proc/" + std::to_string(launcher) + "/task/" + std::to_string(launcher) + "/children"));
  std::vector<pid_t> pids;
  for (pid_t p; in >> p;) pids.push_back(p);
  std::sort(pids.begin(), pids.end());
  return pids;
}

// Waits until `log` shows that training runs, then applies `fault` to rank 1 and returns the
// launcher's exit status and the seconds it took to stop after the fault.
std::pair<int, double> fault_rank1(const std::string& args, const std::string& log, int signal_to_send) {
  const pid_t launcher = start_training(args, log);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (slurp(log).find("data-parallel:") == std::string::npos && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::this_thread::sleep_for(std::chrono::seconds(2));  // a few steps in
  const std::vector<pid_t> ranks = ranks_of(launcher);
  REQUIRE(ranks.size() == 2);
  const auto t0 = std::chrono::steady_clock::now();
  kill(ranks[1], signal_to_send);
  int status = 0;
  while (waitpid(launcher, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(120)) {
      kill(launcher, SIGKILL);
      waitpid(launcher, &status, 0);
      FAIL("the run did not stop within 120 s of the fault");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (pid_t r : ranks) kill(r, SIGKILL);  // a SIGSTOPped rank, if anything is left
  return {status, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()};
}

}  // namespace

TEST_CASE("--gpus 2 and mpirun -np 2 with --sync-bn train like one GPU at the same global batch") {
  if (!dist::nccl_built()) {
    WARN("skipped: mdq was built without NCCL");
    return;
  }
  testing::require_gpu_ranks_train_like_one_gpu(2, " --gpus 2 --sync-bn", " --sync-bn", kAtol, kRtol);
}

TEST_CASE("a killed rank stops the other ranks at once, with a message") {
  const auto [status, seconds] = fault_rank1(
      testing::toy_train_flags("md-tanh-s", "/tmp/mdq-gpu2-kill", 1000000, "cuda") + " --gpus 2",
      "/tmp/mdq-gpu2-kill.log", SIGKILL);
  const std::string log = slurp("/tmp/mdq-gpu2-kill.log");
  INFO(log);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 128 + SIGKILL);
  REQUIRE(log.find("rank 1 was killed by signal 9") != std::string::npos);
  REQUIRE(seconds < 15);  // the launcher's SIGTERM, then SIGKILL after 10 s at the latest
}

TEST_CASE("a hung rank makes the others stop within --dist-timeout, with a message") {
  const auto [status, seconds] = fault_rank1(
      testing::toy_train_flags("md-tanh-s", "/tmp/mdq-gpu2-hang", 1000000, "cuda") + " --gpus 2 --dist-timeout 5",
      "/tmp/mdq-gpu2-hang.log", SIGSTOP);
  const std::string log = slurp("/tmp/mdq-gpu2-hang.log");
  INFO(log);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) != 0);
  REQUIRE(log.find("mdq rank 0: ") != std::string::npos);
  REQUIRE(log.find("has not finished after") != std::string::npos);
  REQUIRE(seconds < 5 + 10 + 10);  // the timeout, the launcher's grace period, slack
}

// mdq-train --gpus N on one machine: this process forks the N ranks itself (no MPI needed) and
// supervises them. Rank 0's NCCL unique id reaches the others through a pipe made before the
// fork. When a rank fails (non-zero exit or a signal) the parent stops the others (SIGTERM, then
// SIGKILL after a grace period) and reports which rank failed and how; the ranks die with the
// parent (PR_SET_PDEATHSIG); SIGINT/SIGTERM/SIGHUP sent to the parent are passed on to the ranks.
#pragma once
#include <cstddef>
#include <functional>

namespace mdq::dist {

struct LocalRank {
  int rank = -1, size = 0;  // rank -1: this process was not forked by run_local_ranks
};
const LocalRank& local_rank();

// Runs job(rank) in `ranks` forked children; a child's exit code is job's return value. The
// parent returns 0 when every rank succeeded, else the first failure's code (128 + signal for a
// signal). Call it before any thread or CUDA work exists in the process (fork copies neither).
int run_local_ranks(int ranks, const std::function<int(int rank)>& job, double grace_s = 10);

// In a forked rank: rank 0's n bytes (n <= PIPE_BUF) to every rank, once per launch. Others wait at
// most timeout_s, and fail at once (with a message) when rank 0 died before sending.
void local_share_from_rank0(void* bytes, size_t n, double timeout_s);

}  // namespace mdq::dist

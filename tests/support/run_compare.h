// Comparing two training runs' folders: the per-step losses in metrics.jsonl and every tensor of
// last.ckpt (parameters, BN buffers, quantizer state), each within a stated tolerance.
#pragma once
#include <cstdlib>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "engine/checkpoint.h"
#include "tests/support/testing.h"
#include "tests/support/toy_training.h"

namespace mdq::testing {

inline std::vector<double> losses(const std::string& run) {
  std::ifstream f(run + "/metrics.jsonl");
  std::vector<double> out;
  std::string line;
  while (std::getline(f, line)) {
    const size_t k = line.find("\"loss\": ");
    if (k != std::string::npos) out.push_back(std::stod(line.substr(k + 8)));
  }
  return out;
}

// Every tensor of two run checkpoints (parameters, BN buffers, quantizer state) within tolerance.
inline void require_same_run(const std::string& a, const std::string& b, float atol, float rtol) {
  Checkpoint ca = load_checkpoint(a + "/last.ckpt"), cb = load_checkpoint(b + "/last.ckpt");
  REQUIRE(ca.tensors.size() == cb.tensors.size());
  for (size_t i = 0; i < ca.tensors.size(); ++i) {
    REQUIRE(ca.tensors[i].first == cb.tensors[i].first);
    if (ca.tensors[i].second.dtype() == DType::F32)
      require_close(cb.tensors[i].second, ca.tensors[i].second, atol, rtol, ca.tensors[i].first);
  }
  const std::vector<double> la = losses(a), lb = losses(b);
  REQUIRE(la.size() == lb.size());
  for (size_t i = 0; i < la.size(); ++i) {
    INFO("loss of step " << i + 1 << ": " << la[i] << " vs " << lb[i]);
    REQUIRE(std::fabs(la[i] - lb[i]) <= atol + rtol * std::fabs(la[i]));
  }
}

// GPU data-parallel acceptance on the toy problem: plain mdq-train on one GPU, then with `flags`
// (" --gpus N ...") and, when there is mpirun, under `mpirun -np ranks` with `mpi_flags`; each
// must report `ranks` NCCL ranks and follow the plain run within tolerance.
inline void require_gpu_ranks_train_like_one_gpu(int ranks, const std::string& flags, const std::string& mpi_flags,
                                                 float atol, float rtol) {
  // cuDNN's heuristics instead of its timed search (kernels/conv2d.cu): every process then picks
  // the same algorithms, so the runs differ only by what data parallelism changes.
  ::setenv("MDQ_CUDNN_ALGOS", "heuristic", 1);
  const std::string tag = "/tmp/mdq-gpu" + std::to_string(ranks), train = binary("mdq-train");
  const std::string banner = "data-parallel: " + std::to_string(ranks) + " ranks (NCCL";
  std::string out;
  REQUIRE(run_command(train + toy_train_flags("md-tanh-s", tag + "-plain", 20, "cuda"), out) == 0);
  const std::string mpirun = mpirun_command(ranks);
  for (const std::string& launch : {train + toy_train_flags("md-tanh-s", tag + "-gpus", 20, "cuda") + flags,
                                    mpirun + " " + train + toy_train_flags("md-tanh-s", tag + "-mpi", 20, "cuda") + mpi_flags}) {
    if (launch.rfind(" ", 0) == 0) {
      WARN("the mpirun part is skipped: no mpirun (MDQ_MPIEXEC)");
      continue;
    }
    INFO(launch);
    REQUIRE(run_command(launch, out) == 0);
    INFO(out);
    REQUIRE(out.find(banner) != std::string::npos);
    const bool mpi = launch.find(tag + "-mpi") != std::string::npos;
    require_same_run(tag + "-plain", tag + (mpi ? "-mpi" : "-gpus"), atol, rtol);
  }
}

}  // namespace mdq::testing

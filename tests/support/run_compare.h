// Comparing two training runs' folders: the per-step losses in metrics.jsonl and every tensor of
// last.ckpt (parameters, BN buffers, quantizer state), each within a stated tolerance.
#pragma once
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "engine/checkpoint.h"
#include "tests/support/testing.h"

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

}  // namespace mdq::testing

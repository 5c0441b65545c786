// Perf mode of the op table (tests/ops/op_table.h): times each entry of op_perf_cases() (the
// table's ops at CIFAR ResNet-18 sizes, batch 32) forward and backward on each backend and prints
// milliseconds per call. Nothing is checked here and nothing fails on time:
// tests/cpu/test_ops.cpp and tests/gpu/test_ops_gpu.cpp check the same entries.
//   bench_ops [--cpu | --gpu] [--precision fp32|tf32|bf16] [filter ...]
// A filter keeps the entries whose name contains it ("conv2d", "batch_norm x[32, 512]"). Both
// columns time the entry as the table defines it: its forward is every output it checks
// (cross_entropy's includes the float-overload backward), and entries whose backward needs saved
// state (batch_norm, max_pool2d, cross_entropy) or lives in autograd (elementwise, linear) run
// their forward inside the backward too.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/precision.h"
#include "tests/ops/op_runner.h"

using namespace mdq;
using namespace mdq::optest;

namespace {

// Milliseconds per call: after one warm-up call (cuDNN's search, first allocations), doubles the
// number of back-to-back calls until a batch takes 0.1 s, synchronising only at batch ends.
double ms_per_call(const std::function<void()>& fn) {
  using Clock = std::chrono::steady_clock;
  fn();
  cuda_synchronize();
  for (int reps = 1;; reps *= 2) {
    const auto t0 = Clock::now();
    for (int i = 0; i < reps; ++i) fn();
    cuda_synchronize();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (s >= 0.1 || reps >= (1 << 14)) return 1e3 * s / reps;
  }
}

bool selected(const OpCase& c, const std::vector<std::string>& filters) {
  if (filters.empty()) return true;
  for (const std::string& f : filters)
    if (c.name.find(f) != std::string::npos) return true;
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<Device> devices = {Device::CPU};
  for (Device d : accelerators()) devices.push_back(d);
  std::vector<std::string> filters;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--cpu")) {
      devices = {Device::CPU};
    } else if (!std::strcmp(argv[i], "--gpu")) {
      devices = accelerators();
      if (devices.empty())
        std::printf("bench_ops: no GPU (%s); nothing to measure.\n", cuda_unavailable_reason().c_str());
    } else if (!std::strcmp(argv[i], "--precision") && i + 1 < argc) {
      set_precision(parse_precision(argv[++i]));
    } else {
      filters.push_back(argv[i]);
    }
  }
  std::printf("bench_ops: precision %s%s%s\n", precision_name(precision()), cuda_available() ? ", GPU " : "",
              cuda_device_name().c_str());
  std::printf("%-64s %-5s %12s %12s\n", "entry", "on", "forward ms", "backward ms");
  for (const OpCase& c : op_perf_cases()) {
    if (!selected(c, filters)) continue;
    for (Device d : devices) {
      const Tensors inputs = to_device(c.inputs, d);
      const double fwd = ms_per_call([&] { c.forward(inputs); });
      std::printf("%-64s %-5s %12.4f", c.name.c_str(), device_name(d), fwd);
      if (c.backward) {
        const Tensors r = to_device(upstream_grads(c, c.forward(inputs)), d);
        std::printf(" %12.4f", ms_per_call([&] { c.backward(inputs, r); }));
      }
      std::printf("\n");
      std::fflush(stdout);
    }
  }
  return 0;
}

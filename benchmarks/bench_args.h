// What the packed-kernel benchmarks share at start-up: the GPU check (a machine without one
// prints why and measures nothing) and the command line (numbers are batch sizes, any other
// word a name that selects what to run).
#pragma once
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/device.h"

struct BenchArgs {
  std::vector<int> batches;
  std::vector<std::string> names;
};

inline BenchArgs parse_bench_args(int argc, char** argv, std::vector<int> default_batches) {
  BenchArgs a;
  for (int i = 1; i < argc; ++i) {
    if (std::atoi(argv[i]) > 0)
      a.batches.push_back(std::atoi(argv[i]));
    else
      a.names.push_back(argv[i]);
  }
  if (a.batches.empty()) a.batches = std::move(default_batches);
  return a;
}

// False (after saying why) when there is no GPU to measure on.
inline bool gpu_for_bench(const char* bench) {
  if (mdq::cuda_available()) return true;
  std::printf("%s: no GPU (%s); nothing to measure.\n", bench, mdq::cuda_unavailable_reason().c_str());
  return false;
}

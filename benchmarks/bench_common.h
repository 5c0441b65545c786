// What the packed-kernel benchmarks share: the GPU check (a machine without one prints why and
// measures nothing), the command line (numbers are batch sizes, any other word a name that
// selects what to run), and timing one call with CUDA events.
#pragma once
#include <cuda_runtime.h>

#include <cstdio>
#include <functional>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/cuda_common.h"
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

// Mean milliseconds of one call of fn over reps back-to-back calls on the engine's stream.
inline float event_ms_per_call(const std::function<void()>& fn, int reps) {
  cudaEvent_t t0, t1;
  CUDA_CHECK(cudaEventCreate(&t0));
  CUDA_CHECK(cudaEventCreate(&t1));
  CUDA_CHECK(cudaEventRecord(t0, mdq::cuda::stream()));
  for (int i = 0; i < reps; ++i) fn();
  CUDA_CHECK(cudaEventRecord(t1, mdq::cuda::stream()));
  CUDA_CHECK(cudaEventSynchronize(t1));
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, t0, t1));
  CUDA_CHECK(cudaEventDestroy(t0));
  CUDA_CHECK(cudaEventDestroy(t1));
  return ms / reps;
}

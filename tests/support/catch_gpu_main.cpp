// Catch2 main for GPU tests: without a usable CUDA device (or fewer than MDQ_MIN_GPUS) it prints
// why and exits 77, which ctest reports as "Skipped" (SKIP_RETURN_CODE in CMakeLists.txt).
// With the devices, runs Catch2.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>

#include "engine/device.h"

int main(int argc, char* argv[]) {
  if (!mdq::cuda_available()) {
    std::printf("SKIPPED: %s\n", mdq::cuda_unavailable_reason().c_str());
    return 77;
  }
  // Tests of several GPUs (test_*_2gpu) say how many they need through MDQ_MIN_GPUS.
  const char* need = std::getenv("MDQ_MIN_GPUS");
  if (need && mdq::cuda_device_count() < std::atoi(need)) {
    std::printf("SKIPPED: needs %s CUDA devices, this host has %d\n", need, mdq::cuda_device_count());
    return 77;
  }
  std::printf("GPU: %s (%d visible)\n", mdq::cuda_device_name().c_str(), mdq::cuda_device_count());
  return Catch::Session().run(argc, argv);
}

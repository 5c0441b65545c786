// Catch2 main for GPU tests: without a usable CUDA device it prints why and exits 77, which
// ctest reports as "Skipped" (SKIP_RETURN_CODE in CMakeLists.txt). With a device, runs Catch2.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>

#include "engine/device.h"

int main(int argc, char* argv[]) {
  if (!mdq::cuda_available()) {
    std::printf("SKIPPED: %s\n", mdq::cuda_unavailable_reason().c_str());
    return 77;
  }
  std::printf("GPU: %s\n", mdq::cuda_device_name().c_str());
  return Catch::Session().run(argc, argv);
}

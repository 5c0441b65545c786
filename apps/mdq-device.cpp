// mdq-device: prints the device mdq-train would pick ("cuda: <name>" or "cpu: <reason>");
// exits 0 when a GPU is usable, 1 otherwise. Scripts use it to choose the main job's model.
#include <cstdio>

#include "engine/device.h"

int main() {
  if (mdq::cuda_available()) {
    std::printf("cuda: %s\n", mdq::cuda_device_name().c_str());
    return 0;
  }
  std::printf("cpu: %s\n", mdq::cuda_unavailable_reason().c_str());
  return 1;
}

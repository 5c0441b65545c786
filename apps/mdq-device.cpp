// mdq-device: prints the device mdq-train would pick ("cuda: <name>" or "cpu: <reason>");
// exits 0 when a GPU is usable, 1 otherwise. Scripts use it to choose the main job's model.
#include <cstdio>
#include <cstring>

#include "engine/device.h"

int main(int argc, char** argv) {
  if (argc > 1) {
    const bool help = std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0;
    std::fprintf(help ? stdout : stderr,
                 "usage: mdq-device\nPrints the device mdq-train would pick (\"cuda: <name>\" or \"cpu: <reason>\");\n"
                 "exits 0 when a GPU is usable, 1 when not (scripts use it to choose), 2 on a bad argument.\n");
    return help ? 0 : 2;
  }
  if (mdq::cuda_available()) {
    std::printf("cuda: %s\n", mdq::cuda_device_name().c_str());
    return 0;
  }
  std::printf("cpu: %s\n", mdq::cuda_unavailable_reason().c_str());
  return 1;
}

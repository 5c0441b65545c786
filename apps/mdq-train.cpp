// mdq-train: trains a quantized network by mirror descent. See --help, or the README.
#include <cstdio>

#include "apps/common/options.h"
#include "apps/common/trainer.h"
#include "engine/error.h"

int main(int argc, char** argv) {
  try {
    mdq::app::TrainOptions options;
    if (!mdq::app::parse_train_args(argc - 1, argv + 1, options)) return 0;
    mdq::app::train(options);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mdq-train: error: %s\n", e.what());
    return 2;
  }
}

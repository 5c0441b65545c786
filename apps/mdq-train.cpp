// mdq-train: trains a quantized network by mirror descent. See --help, or the README.
#include <cstdio>

#include "apps/common/data_parallel.h"
#include "apps/common/options.h"
#include "apps/common/trainer.h"
#include "engine/error.h"

int main(int argc, char** argv) {
  try {
    mdq::app::TrainOptions options;
    if (!mdq::app::parse_train_args(argc - 1, argv + 1, options)) return 0;
    // Runs train() here, or in each of --gpus N forked ranks.
    return mdq::app::run_train_ranks(options, [](const mdq::app::TrainOptions& o) { mdq::app::train(o); });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mdq-train: error: %s\n", e.what());
    return 2;
  }
}

// mdq-train: trains a quantized network by mirror descent. See --help, or the README.
#include <cstdio>
#include <string>
#include <vector>

#include "apps/common/data_parallel.h"
#include "apps/common/options.h"
#include "apps/common/trainer.h"
#include "common/error.h"

int main(int argc, char** argv) {
  // Line-buffered even into a pipe or a file, so the log of a killed run is not lost.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  try {
    mdq::app::TrainOptions options;
    std::vector<std::string> given;
    if (!mdq::app::parse_train_args(argc - 1, argv + 1, options, &given)) return 0;
    if (options.resume) options = mdq::app::resume_options(options, given);
    // Runs train() here, or in each of --gpus N forked ranks; the exit code is rank 0's.
    return mdq::app::run_train_ranks(options, [](const mdq::app::TrainOptions& o) {
      return mdq::app::exit_code(mdq::app::train(o));
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mdq-train: error: %s\n", e.what());
    return 2;
  }
}

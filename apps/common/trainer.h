// The training loop behind mdq-train: data, model, quantizer, schedule, progress, metrics,
// validation of the rounded network, checkpoints, and the final test of the best one.
#pragma once
#include "apps/common/options.h"

namespace mdq::app {

struct TrainResult {
  double best_val_top1 = -1;      // rounded network, validation split (or test when no split)
  double test_top1 = -1;          // the best rounded network on the test split
  double test_top5 = -1;
  double train_images_per_s = 0;  // training throughput, data loading included
};

TrainResult train(const TrainOptions& options);

}  // namespace mdq::app

// The training loop behind mdq-train: data, model, quantizer, schedule, progress, metrics,
// validation of the rounded network, checkpoints, and the final test of the best one.
#pragma once
#include "apps/common/options.h"

namespace mdq::app {

struct TrainResult {
  enum class End { Finished, Diverged, Interrupted };
  End end = End::Finished;
  int64_t stopped_at = 0;         // iteration at which a Diverged/Interrupted run stopped
  double best_val_top1 = -1;      // rounded network, validation split (or test when no split)
  double test_top1 = -1;          // the best rounded network on the test split
  double test_top5 = -1;
  double train_images_per_s = 0;  // training steps only (data loading included; evaluations and checkpoints not)
  double steady_images_per_s = 0;  // the same after this session's first steps (0: too few steps)
};

// Runs (or, with options.resume, continues) the run in options.out. A NaN/Inf loss, logit or
// weight ends it as Diverged without writing a checkpoint (the last good ones stay); SIGINT/
// SIGTERM end it as Interrupted after saving last.ckpt. Bad options throw before anything is read.
TrainResult train(const TrainOptions& options);
// The process exit status for a result (apps/common/stop_signal.h).
int exit_code(const TrainResult& r);

}  // namespace mdq::app

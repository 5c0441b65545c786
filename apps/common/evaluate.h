// Evaluates a network on a split: top-1, top-5 and per-class accuracy, read from the logits by
// the one ranking rule of kernels/label_rank.h (ties to the lower class; NaN/Inf never scores).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/loader.h"
#include "engine/nn/module.h"

namespace mdq::app {

struct EvalResult {
  int64_t count = 0, top1 = 0, top5 = 0;
  int64_t nonfinite = 0;  // rows with a NaN or ±Inf logit: a diverged network (scored wrong)
  double loss_sum = 0;
  std::vector<int64_t> class_count, class_correct;
  double top1_pct() const { return count ? 100.0 * top1 / count : 0.0; }
  double top5_pct() const { return count ? 100.0 * top5 / count : 0.0; }
  double mean_loss() const { return count ? loss_sum / count : 0.0; }
  std::string per_class_report(const std::vector<std::string>& names) const;
  // "" or a warning line that `nonfinite` images had NaN/Inf logits (scored wrong).
  std::string nonfinite_warning() const;
};

// Runs the model in eval mode (BN running statistics) with no grad, restoring training mode after.
EvalResult evaluate(nn::Module& model, data::DataLoader& loader, int num_classes, int64_t max_batches = 0);
// The same scoring for any images -> logits function (e.g. infer::Plan::logits).
EvalResult evaluate_logits(const std::function<Tensor(const Tensor&)>& logits_of, data::DataLoader& loader,
                           int num_classes, int64_t max_batches = 0);

}  // namespace mdq::app

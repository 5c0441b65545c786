#include "apps/common/evaluate.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>
#include <cstdio>

#include "engine/autograd.h"
#include "kernels/label_rank.h"

namespace mdq::app {

EvalResult evaluate(nn::Module& model, data::DataLoader& loader, int num_classes, int64_t max_batches) {
  const bool was_training = model.is_training();
  model.eval();
  NoGradScope no_grad;
  EvalResult r = evaluate_logits([&](const Tensor& images) { return model.forward(Var(images)).value(); }, loader,
                                 num_classes, max_batches);
  model.train(was_training);
  return r;
}

EvalResult evaluate_logits(const std::function<Tensor(const Tensor&)>& logits_of, data::DataLoader& loader,
                           int num_classes, int64_t max_batches) {
  EvalResult r;
  r.class_count.assign(static_cast<size_t>(num_classes), 0);
  r.class_correct.assign(static_cast<size_t>(num_classes), 0);
  const size_t k = static_cast<size_t>(num_classes);
  // Ranks the rows of the batches held so far on the host (the logits are small: N × classes).
  std::vector<std::pair<Tensor, Tensor>> scored;  // (logits, labels) of each batch not yet ranked
  int64_t held_bytes = 0;
  auto rank_held = [&] {
    for (const auto& [logits, labels] : scored) {
      const std::vector<float> z = logits.to_vector();
      const std::vector<int32_t> y = labels.to_vector_i32();
      for (size_t i = 0; i < y.size(); ++i) {
        const float* row = &z[i * k];
        const int64_t rank = rank::label_rank(row, num_classes, y[i]);  // -1: a non-finite logit
        const float mine = row[y[i]];
        float mx = row[0];
        for (size_t c = 0; c < k; ++c) mx = std::max(mx, row[c]);
        double lse = 0;
        for (size_t c = 0; c < k; ++c) lse += std::exp(static_cast<double>(row[c] - mx));
        r.loss_sum += std::log(lse) + mx - mine;
        ++r.count;
        ++r.class_count[static_cast<size_t>(y[i])];
        if (rank < 0) ++r.nonfinite;
        if (rank == 0) {
          ++r.top1;
          ++r.class_correct[static_cast<size_t>(y[i])];
        }
        if (rank >= 0 && rank < 5) ++r.top5;
      }
    }
    scored.clear();
    held_bytes = 0;
  };
  // The logits stay on the device until the last forward is queued (or kMaxHeldBytes of them
  // are held): reading a batch back waits for its forward, and the GPU would idle while the host
  // queues the next one (on an H200, about a third of a ResNet-18 validation pass).
  constexpr int64_t kMaxHeldBytes = int64_t{64} << 20;
  loader.start_epoch(0);
  data::Batch batch;
  int64_t batches = 0;
  while (loader.next(batch)) {
    scored.emplace_back(logits_of(batch.images), batch.labels);
    held_bytes += scored.back().first.nbytes();
    if (held_bytes >= kMaxHeldBytes) rank_held();
    if (max_batches > 0 && ++batches >= max_batches) break;
  }
  rank_held();
  return r;
}

std::string EvalResult::nonfinite_warning() const {
  if (nonfinite == 0) return "";
  return "warning: " + std::to_string(nonfinite) + " of " + std::to_string(count) +
         " images have NaN/Inf logits and count as wrong: the network diverged\n";
}

std::string EvalResult::per_class_report(const std::vector<std::string>& names) const {
  std::string s;
  char line[160];
  for (size_t c = 0; c < class_count.size(); ++c) {
    std::string name = c < names.size() ? names[c] : std::to_string(c);
    double pct = class_count[c] ? 100.0 * class_correct[c] / class_count[c] : 0.0;
    std::snprintf(line, sizeof line, "  %-20s %6.2f%%  (%lld/%lld)\n", name.c_str(), pct,
                  static_cast<long long>(class_correct[c]), static_cast<long long>(class_count[c]));
    s += line;
  }
  return s;
}

}  // namespace mdq::app

// The one accuracy rule (kernels/label_rank.h) as every path applies it: a diverged network
// (NaN/Inf logits) never scores, a tie goes to the lower class index, and the training counter
// (ops::count_topk_correct) and the evaluation path (app::evaluate_logits) agree row for row.
#include <cmath>
#include <limits>
#include <memory>

#include "apps/common/evaluate.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "engine/ops/loss.h"
#include "engine/random.h"
#include "kernels/label_rank.h"
#include "tests/support/testing.h"

using namespace mdq;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

// A dataset of n blank 1×2×2 images whose labels cycle through `classes`.
class LabelsOnly : public data::Dataset {
 public:
  LabelsOnly(int64_t n, int classes) : n_(n) {
    info_.name = "labels-only";
    info_.num_classes = classes;
    info_.channels = 1;
    info_.height = info_.width = 2;
    info_.mean = {0.f};
    info_.std = {1.f};
  }
  int64_t size() const override { return n_; }
  const data::DatasetInfo& info() const override { return info_; }
  int label(int64_t i) const override { return static_cast<int>(i % info_.num_classes); }
  void image(int64_t, data::Image& out) const override {
    out.height = out.width = 2;
    out.channels = 1;
    out.pixels.assign(4, 0);
  }

 private:
  int64_t n_;
  data::DatasetInfo info_;
};

}  // namespace

TEST_CASE("label_rank: larger logits first, ties to the lower index, non-finite rows rank nowhere") {
  const float row[] = {1.f, 3.f, 3.f, 0.f};
  REQUIRE(rank::label_rank(row, 4, 1) == 0);  // tied with class 2, and the lower index wins
  REQUIRE(rank::label_rank(row, 4, 2) == 1);
  REQUIRE(rank::label_rank(row, 4, 0) == 2);
  REQUIRE(rank::label_rank(row, 4, 3) == 3);
  REQUIRE(rank::argmax(row, 4) == 1);
  const float flat[] = {2.f, 2.f, 2.f};
  REQUIRE(rank::argmax(flat, 3) == 0);
  REQUIRE(rank::label_rank(flat, 3, 0) == 0);
  REQUIRE(rank::label_rank(flat, 3, 2) == 2);
  for (float bad : {kNaN, kInf, -kInf}) {
    const float r[] = {0.f, bad, 1.f};
    REQUIRE(rank::label_rank(r, 3, 2) == -1);
    REQUIRE(rank::label_rank(r, 3, 1) == -1);
    REQUIRE(rank::argmax(r, 3) == -1);
  }
}

TEST_CASE("count_topk_correct gives a NaN or Inf network 0%, for every k") {
  const int64_t n = 6, k = 4;
  for (float bad : {kNaN, kInf, -kInf}) {
    std::vector<float> v(static_cast<size_t>(n * k), bad);
    Tensor logits = Tensor::from_vector(v, {n, k});
    Tensor labels = Tensor::from_vector_i32({0, 1, 2, 3, 0, 1}, {n});
    for (int top = 1; top <= 5; ++top) REQUIRE(ops::count_topk_correct(logits, labels, top) == 0);
    v.assign(v.size(), 0.5f);
    v[7] = bad;  // one bad logit spoils only its own row (row 1)
    v[0] = 2.f;  // row 0: label 0 is the clear maximum
    // All 0.5 but row 0 (label 0 the clear maximum) and row 1 (a bad logit): rows 0 and 4 (label 0
    // wins the tie) count; rows 2, 3, 5 (labels 2, 3, 1) lose their ties to class 0.
    REQUIRE(ops::count_topk_correct(Tensor::from_vector(v, {n, k}), labels, 1) == 2);
  }
}

TEST_CASE("training counter and evaluation agree row for row, ties and NaN included") {
  const int classes = 5;
  const int64_t n = 200;
  auto ds = std::make_shared<LabelsOnly>(n, classes);
  data::DataLoader loader(ds, 64, false, false, data::AugmentConfig{}, 1, Device::CPU, 1);
  Rng rng(7);
  // Coarse logits (values 0..2): many ties; every 9th row NaN.
  std::vector<float> all(static_cast<size_t>(n * classes));
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<float>(rng.below(3));
  for (int64_t r = 0; r < n; r += 9) all[static_cast<size_t>(r * classes + 2)] = kNaN;
  int64_t offset = 0;
  auto logits_of = [&](const Tensor& images) {
    const int64_t b = images.dim(0);
    std::vector<float> v(all.begin() + offset * classes, all.begin() + (offset + b) * classes);
    offset += b;
    return Tensor::from_vector(v, {b, classes});
  };
  app::EvalResult r = app::evaluate_logits(logits_of, loader, classes);
  std::vector<int32_t> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) y[static_cast<size_t>(i)] = ds->label(i);
  Tensor logits = Tensor::from_vector(all, {n, classes});
  Tensor labels = Tensor::from_vector_i32(y, {n});
  REQUIRE(r.count == n);
  REQUIRE(r.nonfinite == (n + 8) / 9);
  REQUIRE(r.top1 == ops::count_topk_correct(logits, labels, 1));
  REQUIRE(r.top5 == ops::count_topk_correct(logits, labels, 5));
  REQUIRE(r.top5 == n - r.nonfinite);  // k = K counts every finite row
  REQUIRE_FALSE(r.nonfinite_warning().empty());
  // By hand: a row counts in top-1 exactly when its label is the first maximum.
  int64_t first_max = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* row = &all[static_cast<size_t>(i * classes)];
    bool finite = true;
    int64_t best = 0;
    for (int c = 0; c < classes; ++c) {
      finite = finite && std::isfinite(row[c]);
      if (row[c] > row[best]) best = c;
    }
    first_max += finite && best == y[static_cast<size_t>(i)];
  }
  REQUIRE(r.top1 == first_max);
}

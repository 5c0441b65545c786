// The loader yields every index exactly once per epoch (shuffled or not, any batch size, any
// number of workers), its data depends only on (seed, epoch, index), and splits are seeded,
// stratified and deterministic.
#include <map>
#include <set>

#include "data/loader.h"
#include "tests/cpu/test_data_support.h"

using namespace mdq;
using namespace mdq::data;

namespace {

AugmentConfig crop_flip() {
  AugmentConfig a;
  a.random_crop = true;
  a.crop_padding = 2;
  a.hflip = true;
  return a;
}

std::vector<Batch> epoch(DataLoader& dl, int64_t e) {
  dl.start_epoch(e);
  std::vector<Batch> out;
  Batch b;
  while (dl.next(b)) out.push_back(b);
  return out;
}

}  // namespace

TEST_CASE("every index exactly once per epoch, with and without shuffling, for any batch size") {
  for (int64_t n : {1, 10, 37}) {
    auto ds = testing::synthetic_dataset(n);
    for (int64_t bs : {1, 4, 5, 10, 64})
      for (bool shuffle : {false, true})
        for (bool drop_last : {false, true})
          for (int workers : {1, 3}) {
            CAPTURE(n, bs, shuffle, drop_last, workers);
            DataLoader dl(ds, bs, shuffle, drop_last, crop_flip(), 11, Device::CPU, workers, workers == 1 ? 1 : 3);
            int64_t expect_batches = drop_last ? n / bs : (n + bs - 1) / bs;
            REQUIRE(dl.batches_per_epoch() == expect_batches);
            for (int64_t e = 0; e < 2; ++e) {
              std::vector<Batch> batches = epoch(dl, e);
              REQUIRE(static_cast<int64_t>(batches.size()) == expect_batches);
              std::vector<int64_t> seen;
              for (size_t k = 0; k < batches.size(); ++k) {
                const Batch& b = batches[k];
                int64_t rows = static_cast<int64_t>(b.indices.size());
                REQUIRE(rows == (k + 1 < batches.size() || drop_last || n % bs == 0 ? bs : n % bs));
                REQUIRE(b.images.shape() == Shape{rows, 3, 6, 5});
                REQUIRE(b.labels.shape() == Shape{rows});
                std::vector<int32_t> labels = b.labels.to_vector_i32();
                for (int64_t r = 0; r < rows; ++r) REQUIRE(labels[r] == b.indices[r] % 4);
                seen.insert(seen.end(), b.indices.begin(), b.indices.end());
              }
              std::set<int64_t> unique(seen.begin(), seen.end());
              REQUIRE(unique.size() == seen.size());
              REQUIRE(static_cast<int64_t>(seen.size()) == (drop_last ? n / bs * bs : n));
              if (!shuffle) for (size_t i = 0; i < seen.size(); ++i) REQUIRE(seen[i] == static_cast<int64_t>(i));
              if (!drop_last) REQUIRE(*unique.rbegin() == n - 1);
            }
          }
  }
}

TEST_CASE("batches depend on (seed, epoch, index) only: any worker count gives the same data") {
  auto ds = testing::synthetic_dataset(53);
  DataLoader one(ds, 8, true, false, crop_flip(), 5, Device::CPU, 1, 1);
  DataLoader many(ds, 8, true, false, crop_flip(), 5, Device::CPU, 4, 2);
  Augmenter aug(crop_flip(), ds->info());
  for (int64_t e : {0, 1, 7}) {
    std::vector<Batch> a = epoch(one, e), b = epoch(many, e);
    REQUIRE(a.size() == b.size());
    for (size_t k = 0; k < a.size(); ++k) {
      REQUIRE(a[k].indices == b[k].indices);
      REQUIRE(a[k].images.to_vector() == b[k].images.to_vector());
      // ...and equal the augmenter applied directly with the sample's seed.
      std::vector<float> got = a[k].images.to_vector(), want(aug.out_floats());
      for (size_t r = 0; r < a[k].indices.size(); ++r) {
        int64_t idx = a[k].indices[r];
        aug.apply(ds->cached(idx), 6, 5, sample_seed(5, e, idx), want.data());
        REQUIRE(std::equal(want.begin(), want.end(), got.begin() + r * aug.out_floats()));
      }
    }
  }
  // Different epochs shuffle differently; the same epoch again is the same.
  REQUIRE(DataLoader::epoch_order(53, true, 5, 0) != DataLoader::epoch_order(53, true, 5, 1));
  REQUIRE(DataLoader::epoch_order(53, true, 5, 3) == DataLoader::epoch_order(53, true, 5, 3));
  REQUIRE(DataLoader::epoch_order(53, true, 6, 3) != DataLoader::epoch_order(53, true, 5, 3));
}

TEST_CASE("restarting an epoch part-way and destroying a busy loader are safe") {
  auto ds = testing::synthetic_dataset(200);
  DataLoader dl(ds, 7, true, false, crop_flip(), 1, Device::CPU, 3, 2);
  dl.start_epoch(0);
  Batch b;
  REQUIRE(dl.next(b));
  std::vector<int64_t> first = b.indices;
  dl.start_epoch(0);  // abandon and restart: the same first batch again
  REQUIRE(dl.next(b));
  REQUIRE(b.indices == first);
  std::vector<Batch> full = epoch(dl, 2);
  REQUIRE(full.size() == 29);
  { DataLoader busy(ds, 3, true, false, crop_flip(), 1, Device::CPU, 2, 4); busy.start_epoch(0); }
  REQUIRE_THROWS_WITH(DataLoader(ds, 4, false, false, crop_flip(), 0, Device::CPU).next(b), Catch::Contains("start_epoch"));
}

TEST_CASE("the validation split is seeded, stratified, disjoint and reported") {
  // Class-ordered like the JPEG copies: the tail would hold a single class.
  RawImages raw;
  raw.count = 1000;
  raw.height = raw.width = 1;
  raw.channels = 1;
  raw.pixels.assign(1000, 0);
  for (int i = 0; i < 1000; ++i) raw.labels.push_back(i / 100);
  DatasetInfo info{"ordered", 1, 1, 1, 10, {0.5f}, {0.5f}, {}};
  auto full = std::make_shared<InMemoryDataset>(info, raw);
  std::shared_ptr<Dataset> train, val, train2, val2, train3, val3;
  std::string report;
  split_train_val(full, 42, 0.1, train, val, report);
  REQUIRE(train->size() == 900);
  REQUIRE(val->size() == 100);
  for (int64_t c : class_counts(*val)) REQUIRE(c == 10);
  for (int64_t c : class_counts(*train)) REQUIRE(c == 90);
  auto vi = static_cast<SubsetDataset&>(*val).indices(), ti = static_cast<SubsetDataset&>(*train).indices();
  std::set<int64_t> all(vi.begin(), vi.end());
  all.insert(ti.begin(), ti.end());
  REQUIRE(all.size() == 1000);
  split_train_val(full, 42, 0.1, train2, val2, report);
  REQUIRE(static_cast<SubsetDataset&>(*val2).indices() == vi);
  split_train_val(full, 43, 0.1, train3, val3, report);
  REQUIRE(static_cast<SubsetDataset&>(*val3).indices() != vi);
  REQUIRE(report.find("train 900, val 100") != std::string::npos);
}

// The dataset classes, the seeded stratified validation split and the per-class/per-channel
// summaries. Datasets by name (their statistics, loaders and augmentation): data/dataset_table.cpp.
#include "data/dataset.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <sstream>

#include "data/image_folder.h"
#include "common/error.h"
#include "engine/random.h"

namespace mdq::data {

// ---------------------------------------------------------------- dataset classes
InMemoryDataset::InMemoryDataset(DatasetInfo info, RawImages raw) : info_(std::move(info)), raw_(std::move(raw)) {
  MDQ_CHECK(raw_.height == info_.height && raw_.width == info_.width && raw_.channels == info_.channels,
            "data: " << info_.name << " images are " << raw_.height << "x" << raw_.width << "x" << raw_.channels
                     << ", expected " << info_.height << "x" << info_.width << "x" << info_.channels);
  image_bytes_ = static_cast<size_t>(raw_.height) * raw_.width * raw_.channels;
  MDQ_CHECK(raw_.pixels.size() == image_bytes_ * static_cast<size_t>(raw_.count) &&
                raw_.labels.size() == static_cast<size_t>(raw_.count),
            "data: " << info_.name << ": " << raw_.count << " images but " << raw_.pixels.size() << " pixel bytes and "
                     << raw_.labels.size() << " labels");
  for (size_t i = 0; i < raw_.labels.size(); ++i)
    MDQ_CHECK(raw_.labels[i] >= 0 && raw_.labels[i] < info_.num_classes,
              "data: " << info_.name << " sample " << i << " has label " << raw_.labels[i] << ", outside [0, "
                       << info_.num_classes << ")");
}

void InMemoryDataset::image(int64_t i, Image& out) const {
  out.height = raw_.height;
  out.width = raw_.width;
  out.channels = raw_.channels;
  const uint8_t* p = cached(i);
  out.pixels.assign(p, p + image_bytes_);
}

FileDataset::FileDataset(DatasetInfo info, std::vector<std::string> paths, std::vector<int32_t> labels)
    : info_(std::move(info)), paths_(std::move(paths)), labels_(std::move(labels)) {
  MDQ_CHECK(paths_.size() == labels_.size(), "data: " << info_.name << ": " << paths_.size() << " files, "
                                                      << labels_.size() << " labels");
  for (size_t i = 0; i < labels_.size(); ++i)
    MDQ_CHECK(labels_[i] >= 0 && labels_[i] < info_.num_classes,
              "data: '" << paths_[i] << "' has label " << labels_[i] << ", outside [0, " << info_.num_classes << ")");
}

void FileDataset::image(int64_t i, Image& out) const { out = decode_image(path(i), info_.channels); }

SubsetDataset::SubsetDataset(std::shared_ptr<const Dataset> parent, std::vector<int64_t> indices)
    : parent_(std::move(parent)), indices_(std::move(indices)) {
  for (int64_t i : indices_)
    MDQ_CHECK(i >= 0 && i < parent_->size(), "data: subset index " << i << " outside [0, " << parent_->size() << ")");
}

// ---------------------------------------------------------------- summaries and the split
std::vector<int64_t> class_counts(const Dataset& ds) {
  std::vector<int64_t> counts(static_cast<size_t>(std::max(ds.info().num_classes, 0)), 0);
  for (int64_t i = 0; i < ds.size(); ++i) ++counts.at(static_cast<size_t>(ds.label(i)));
  return counts;
}

void channel_stats(const Dataset& ds, std::vector<double>& mean, std::vector<double>& std) {
  const int c = ds.info().channels;
  std::vector<uint64_t> sum(c, 0), sumsq(c, 0);  // exact integer sums: no cancellation in E[x^2]-E[x]^2
  uint64_t pixels = 0;
  Image img;
  for (int64_t i = 0; i < ds.size(); ++i) {
    const uint8_t* p = ds.cached(i);
    size_t n = static_cast<size_t>(ds.info().height) * ds.info().width;
    if (!p) {
      ds.image(i, img);
      p = img.pixels.data();
      n = static_cast<size_t>(img.height) * img.width;
    }
    for (size_t k = 0; k < n; ++k)
      for (int ch = 0; ch < c; ++ch) {
        uint64_t v = p[k * c + ch];
        sum[ch] += v;
        sumsq[ch] += v * v;
      }
    pixels += n;
  }
  mean.assign(c, 0.0);
  std.assign(c, 0.0);
  if (pixels == 0) return;
  for (int ch = 0; ch < c; ++ch) {
    double m = static_cast<double>(sum[ch]) / pixels, m2 = static_cast<double>(sumsq[ch]) / pixels;
    mean[ch] = m / 255.0;
    std[ch] = std::sqrt(std::max(0.0, m2 - m * m)) / 255.0;
  }
}

namespace {

std::string balance_table(const DatasetInfo& info, const std::vector<const Dataset*>& parts,
                          const std::vector<std::string>& part_names) {
  std::ostringstream o;
  std::vector<std::vector<int64_t>> counts;
  for (const Dataset* p : parts) counts.push_back(p ? class_counts(*p) : std::vector<int64_t>(info.num_classes, 0));
  if (info.num_classes <= 20) {
    o << "  " << std::left << std::setw(14) << "class";
    for (const auto& n : part_names) o << std::right << std::setw(8) << n;
    o << "\n";
    for (int c = 0; c < info.num_classes; ++c) {
      std::string name = c < static_cast<int>(info.class_names.size()) ? info.class_names[c] : std::to_string(c);
      o << "  " << std::left << std::setw(14) << name.substr(0, 13);
      for (const auto& cnt : counts) o << std::right << std::setw(8) << cnt[c];
      o << "\n";
    }
  } else {
    for (size_t k = 0; k < parts.size(); ++k) {
      auto [lo, hi] = std::minmax_element(counts[k].begin(), counts[k].end());
      o << "  " << part_names[k] << " per class: min " << (counts[k].empty() ? 0 : *lo) << ", max "
        << (counts[k].empty() ? 0 : *hi) << " over " << info.num_classes << " classes\n";
    }
  }
  return o.str();
}

}  // namespace

void split_train_val(const std::shared_ptr<Dataset>& full, uint64_t seed, double val_fraction,
                     std::shared_ptr<Dataset>& train, std::shared_ptr<Dataset>& val, std::string& report) {
  MDQ_CHECK(val_fraction >= 0 && val_fraction < 1, "data: val_fraction " << val_fraction << " must be in [0, 1)");
  const DatasetInfo& info = full->info();
  std::vector<std::vector<int64_t>> by_class(static_cast<size_t>(info.num_classes));
  for (int64_t i = 0; i < full->size(); ++i) by_class.at(static_cast<size_t>(full->label(i))).push_back(i);
  std::vector<int64_t> train_idx, val_idx;
  for (size_t c = 0; c < by_class.size(); ++c) {
    auto& idx = by_class[c];
    Rng rng(splitmix64(seed ^ 0x73706c6974ull) + c);  // per class, so the split is stratified
    for (size_t k = idx.size(); k > 1; --k) std::swap(idx[k - 1], idx[rng.below(k)]);
    size_t n_val = static_cast<size_t>(std::llround(val_fraction * static_cast<double>(idx.size())));
    val_idx.insert(val_idx.end(), idx.begin(), idx.begin() + n_val);
    train_idx.insert(train_idx.end(), idx.begin() + n_val, idx.end());
  }
  std::sort(train_idx.begin(), train_idx.end());
  std::sort(val_idx.begin(), val_idx.end());
  train = std::make_shared<SubsetDataset>(full, std::move(train_idx));
  val = val_fraction > 0 ? std::make_shared<SubsetDataset>(full, std::move(val_idx)) : nullptr;
  std::ostringstream o;
  o << info.name << " split (seed " << seed << ", val fraction " << val_fraction << ", stratified): train "
    << train->size() << ", val " << (val ? val->size() : 0) << "\n";
  o << balance_table(info, {train.get(), val.get()}, {"train", "val"});
  report = o.str();
}

}  // namespace mdq::data

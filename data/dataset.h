// Datasets: what the training app sees of the data. Images are uint8 HWC (height, width,
// channels; channels 1 or 3), labels int in [0, num_classes). Datasets are read-only after
// construction, so any number of loader threads may read them at once.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/formats.h"

namespace mdq::data {

struct DatasetInfo {
  std::string name;
  int channels = 0, height = 0, width = 0;  // height/width 0: images differ in size (ImageNet)
  int num_classes = 0;
  std::vector<float> mean, std;  // per channel, of pixel/255; the normalisation statistics
  std::vector<std::string> class_names;
};

// One decoded image, uint8 HWC.
struct Image {
  int height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;
  uint8_t* at(int y, int x) { return pixels.data() + (static_cast<size_t>(y) * width + x) * channels; }
  const uint8_t* at(int y, int x) const { return pixels.data() + (static_cast<size_t>(y) * width + x) * channels; }
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual int label(int64_t i) const = 0;
  // Image i as uint8 HWC. Thread-safe. Decodes from disk for lazy datasets (ImageNet).
  virtual void image(int64_t i, Image& out) const = 0;
  // Image i in memory, info().height x width x channels HWC, or nullptr when the dataset is not
  // cached (then use image()). The loader's fast path: no copy, no decode.
  virtual const uint8_t* cached(int64_t i) const { return nullptr; }
  virtual const DatasetInfo& info() const = 0;
};

// Every image decoded once and kept in memory (CIFAR, MNIST, Fashion-MNIST, Tiny ImageNet).
class InMemoryDataset : public Dataset {
 public:
  InMemoryDataset(DatasetInfo info, RawImages raw);  // checks sizes and label ranges
  int64_t size() const override { return raw_.count; }
  int label(int64_t i) const override { return raw_.labels[static_cast<size_t>(i)]; }
  void image(int64_t i, Image& out) const override;
  const uint8_t* cached(int64_t i) const override {
    return raw_.pixels.data() + static_cast<size_t>(i) * image_bytes_;
  }
  const DatasetInfo& info() const override { return info_; }
  // For datasets whose statistics come from their own pixels (the generic folder).
  void set_statistics(std::vector<float> mean, std::vector<float> std) {
    info_.mean = std::move(mean);
    info_.std = std::move(std);
  }

 private:
  DatasetInfo info_;
  RawImages raw_;
  size_t image_bytes_;
};

// Images decoded from their files on every access (ImageNet: too big to cache).
class FileDataset : public Dataset {
 public:
  FileDataset(DatasetInfo info, std::vector<std::string> paths, std::vector<int32_t> labels);
  int64_t size() const override { return static_cast<int64_t>(paths_.size()); }
  int label(int64_t i) const override { return labels_[static_cast<size_t>(i)]; }
  void image(int64_t i, Image& out) const override;
  const DatasetInfo& info() const override { return info_; }
  const std::string& path(int64_t i) const { return paths_[static_cast<size_t>(i)]; }

 private:
  DatasetInfo info_;
  std::vector<std::string> paths_;
  std::vector<int32_t> labels_;
};

// A view of some samples of another dataset (a train or validation split).
class SubsetDataset : public Dataset {
 public:
  SubsetDataset(std::shared_ptr<const Dataset> parent, std::vector<int64_t> indices);
  int64_t size() const override { return static_cast<int64_t>(indices_.size()); }
  int label(int64_t i) const override { return parent_->label(indices_[static_cast<size_t>(i)]); }
  void image(int64_t i, Image& out) const override { parent_->image(indices_[static_cast<size_t>(i)], out); }
  const uint8_t* cached(int64_t i) const override { return parent_->cached(indices_[static_cast<size_t>(i)]); }
  const DatasetInfo& info() const override { return parent_->info(); }
  const std::vector<int64_t>& indices() const { return indices_; }

 private:
  std::shared_ptr<const Dataset> parent_;
  std::vector<int64_t> indices_;
};

struct Splits {
  std::shared_ptr<Dataset> train, val, test;  // val is null when val_fraction == 0
  std::string balance_report;                 // per-class counts of the splits, for printing
};

// Datasets by name (one row each in data/dataset_table.cpp): cifar10, cifar100, mnist,
// fashion-mnist, tinyimagenet, imagenet, folder.
// data_dir layouts (also accepted: data_dir is the parent of a folder named after the dataset):
//   cifar10   data_batch_1..5.bin + test_batch.bin, or label_names.txt + {train,test}/<class>/*.jpg
//   cifar100  train.bin + test.bin, or fine_label_names.txt + {train,test}/<class>/*.jpg
//   mnist, fashion-mnist  {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
//   tinyimagenet  wnids.txt, train/<wnid>/images/*.JPEG, val/val_annotations.txt + val/images/
//                 (test = the official val set, whose labels are public)
//   imagenet  train/<wnid>/*.JPEG, val/<wnid>/*.JPEG (decoded per access, not cached)
//   folder    train/<class>/*, test/ (or val/)<class>/*; classes from classes.txt if present,
//             else sorted folder names; all images one size; cached in memory
// The validation split takes round(val_fraction * n_c) samples of each class c, chosen by a
// shuffle seeded with seed (the folder copies are ordered by class, so never the tail).
Splits load_dataset(const std::string& name, const std::string& data_dir, uint64_t seed,
                    double val_fraction = 0.1);

// The standard info (channels, size, classes, mean/std) of a named dataset; class_names empty.
DatasetInfo standard_info(const std::string& name);

// Stratified seeded split of full into (train, val); fills report with per-class counts.
void split_train_val(const std::shared_ptr<Dataset>& full, uint64_t seed, double val_fraction,
                     std::shared_ptr<Dataset>& train, std::shared_ptr<Dataset>& val, std::string& report);

std::vector<int64_t> class_counts(const Dataset& ds);
// Per-channel mean and standard deviation of pixel/255 over the whole dataset.
void channel_stats(const Dataset& ds, std::vector<double>& mean, std::vector<double>& std);

}  // namespace mdq::data

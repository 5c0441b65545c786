// The datasets mdq knows by name, one row each: the standard statistics, the loader of its
// layouts (data/dataset.h lists them) and its augmentation recipes. load_dataset, standard_info,
// train_augment_for and eval_augment_for all read this table; a new dataset is a new row.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "data/augment.h"
#include "data/dataset.h"

namespace mdq::data {

// What a loader reads: the full training set (before the validation split) and the test set.
struct LoadedSplits {
  std::shared_ptr<Dataset> train, test;
};

struct DatasetEntry {
  DatasetInfo info;  // name, channels, size, classes, mean/std; class_names empty
  // Reads the dataset from data_dir (or a sub-folder named after it); fills info.class_names
  // (the folder dataset: its size, classes and statistics too). Errors name the missing file.
  LoadedSplits (*load)(const std::string& data_dir, DatasetInfo& info);
  AugmentConfig train, eval;  // the standard recipes; all normalise with info's mean/std
};

const std::vector<DatasetEntry>& dataset_table();
const DatasetEntry* find_dataset(const std::string& name);  // nullptr when unknown
std::string known_datasets();                                // "cifar10, cifar100, ..., folder"

}  // namespace mdq::data

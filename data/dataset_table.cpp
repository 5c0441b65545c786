// The datasets mdq knows by name, one row each (data/dataset_table.h), with their loaders, and
// load_dataset / standard_info on top of the table.
#include "data/dataset_table.h"

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "data/image_folder.h"
#include "common/error.h"

namespace fs = std::filesystem;

namespace mdq::data {
namespace {

bool path_exists(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

// The folder that holds the dataset: data_dir itself, or a known sub-folder of it.
std::string resolve_dir(const std::string& data_dir, const std::vector<std::string>& markers,
                        const std::vector<std::string>& subfolders) {
  std::error_code ec;
  MDQ_CHECK(fs::is_directory(data_dir, ec), "data: data dir '" << data_dir << "' is missing (not a directory)");
  std::vector<fs::path> candidates{fs::path(data_dir)};
  for (const auto& s : subfolders) candidates.push_back(fs::path(data_dir) / s);
  for (const auto& c : candidates)
    for (const auto& m : markers)
      if (path_exists(c / m)) return c.string();
  std::ostringstream o;
  for (const auto& m : markers) o << " " << m;
  for (const auto& s : subfolders)  // the CIFAR JPEG copies come as tarballs: say how to unpack them
    MDQ_CHECK(!path_exists(fs::path(data_dir) / (s + "-jpeg.tar.gz")),
              "data: '" << data_dir << "' holds " << s << "-jpeg.tar.gz but no extracted copy; run: tar xzf '"
                        << (fs::path(data_dir) / (s + "-jpeg.tar.gz")).string() << "' -C <dir> and pass --data-dir <dir>");
  o << " (looked also in its sub-folders";
  for (const auto& f : subfolders) o << " " << f << "/";
  MDQ_FAIL("data: '" << data_dir << "' holds none of" << o.str() << ")");
}

std::shared_ptr<Dataset> concat_cifar(const std::vector<std::string>& files, CifarKind kind, const DatasetInfo& info) {
  RawImages all;
  for (const auto& f : files) {
    std::vector<uint8_t> bytes = read_file(f);
    RawImages part = parse_cifar(bytes.data(), bytes.size(), kind, f);
    if (all.count == 0) {
      all = std::move(part);
      continue;
    }
    all.count += part.count;
    all.pixels.insert(all.pixels.end(), part.pixels.begin(), part.pixels.end());
    all.labels.insert(all.labels.end(), part.labels.begin(), part.labels.end());
    all.coarse_labels.insert(all.coarse_labels.end(), part.coarse_labels.begin(), part.coarse_labels.end());
  }
  return std::make_shared<InMemoryDataset>(info, std::move(all));
}

std::string idx_path(const std::string& dir, const std::string& stem) {
  fs::path plain = fs::path(dir) / stem, gz = fs::path(dir) / (stem + ".gz");
  if (path_exists(plain)) return plain.string();
  MDQ_CHECK(path_exists(gz), "data: neither '" << plain.string() << "' nor '" << gz.string() << "' exists");
  return gz.string();
}

std::shared_ptr<Dataset> load_idx_pair(const std::string& dir, const std::string& prefix, const DatasetInfo& info) {
  std::string ip = idx_path(dir, prefix + "-images-idx3-ubyte"), lp = idx_path(dir, prefix + "-labels-idx1-ubyte");
  std::vector<uint8_t> ib = gunzip_if_needed(read_file(ip), ip), lb = gunzip_if_needed(read_file(lp), lp);
  IdxArray images = parse_idx(ib.data(), ib.size(), ip), labels = parse_idx(lb.data(), lb.size(), lp);
  RawImages raw = idx_to_images(images, labels, info.num_classes, ip, lp);
  MDQ_CHECK(raw.height == info.height && raw.width == info.width,
            "data: '" << ip << "' holds " << raw.height << "x" << raw.width << " images; " << info.name << " is "
                      << info.height << "x" << info.width);
  return std::make_shared<InMemoryDataset>(info, std::move(raw));
}

std::vector<std::string> checked_names(const std::string& path, int expected) {
  std::vector<std::string> names = read_lines(path);
  MDQ_CHECK(static_cast<int>(names.size()) == expected,
            "data: '" << path << "' lists " << names.size() << " classes, expected " << expected);
  return names;
}

std::vector<std::string> numbered(int n) {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back(std::to_string(i));
  return v;
}

// ---------------------------------------------------------------- the loaders, one per layout
// Each reads the full training set and the test set from data_dir (see dataset.h for the
// layouts) and fills info.class_names; the folder loader fills size, classes and statistics too.

// The official binary batches, or the JPEG folder copy (label names + {train,test}/<class>/).
LoadedSplits load_cifar(const std::string& data_dir, DatasetInfo& info, bool c10) {
  std::string names_file = c10 ? "label_names.txt" : "fine_label_names.txt";
  std::string bin_marker = c10 ? "data_batch_1.bin" : "train.bin";
  std::string dir = resolve_dir(data_dir, {bin_marker, names_file},
                                {info.name, c10 ? "cifar-10-batches-bin" : "cifar-100-binary"});
  if (path_exists(fs::path(dir) / bin_marker)) {
    if (path_exists(fs::path(dir) / names_file)) info.class_names = checked_names((fs::path(dir) / names_file).string(), info.num_classes);
    else if (c10 && path_exists(fs::path(dir) / "batches.meta.txt"))
      info.class_names = checked_names((fs::path(dir) / "batches.meta.txt").string(), 10);
    else info.class_names = numbered(info.num_classes);
    CifarKind kind = c10 ? CifarKind::Cifar10 : CifarKind::Cifar100;
    std::vector<std::string> train_files;
    if (c10) for (int b = 1; b <= 5; ++b) train_files.push_back((fs::path(dir) / ("data_batch_" + std::to_string(b) + ".bin")).string());
    else train_files.push_back((fs::path(dir) / "train.bin").string());
    return {concat_cifar(train_files, kind, info),
            concat_cifar({(fs::path(dir) / (c10 ? "test_batch.bin" : "test.bin")).string()}, kind, info)};
  }
  // the JPEG folder copy
  info.class_names = checked_names((fs::path(dir) / names_file).string(), info.num_classes);
  return {std::make_shared<InMemoryDataset>(
              info, decode_all(scan_class_folders((fs::path(dir) / "train").string(), info.class_names), 3, 32, 32)),
          std::make_shared<InMemoryDataset>(
              info, decode_all(scan_class_folders((fs::path(dir) / "test").string(), info.class_names), 3, 32, 32))};
}
LoadedSplits load_cifar10(const std::string& data_dir, DatasetInfo& info) { return load_cifar(data_dir, info, true); }
LoadedSplits load_cifar100(const std::string& data_dir, DatasetInfo& info) { return load_cifar(data_dir, info, false); }

// {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
LoadedSplits load_idx_dataset(const std::string& data_dir, DatasetInfo& info, std::vector<std::string> class_names) {
  std::string dir = resolve_dir(data_dir, {"train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"}, {info.name});
  info.class_names = std::move(class_names);
  return {load_idx_pair(dir, "train", info), load_idx_pair(dir, "t10k", info)};
}
LoadedSplits load_mnist(const std::string& data_dir, DatasetInfo& info) {
  return load_idx_dataset(data_dir, info, numbered(10));
}
LoadedSplits load_fashion_mnist(const std::string& data_dir, DatasetInfo& info) {
  return load_idx_dataset(data_dir, info, {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                           "Sneaker", "Bag", "Ankle boot"});
}

// wnids.txt, train/<wnid>/images/, val/val_annotations.txt (the official val set is the test set).
LoadedSplits load_tinyimagenet(const std::string& data_dir, DatasetInfo& info) {
  std::string dir = resolve_dir(data_dir, {"wnids.txt"}, {info.name, "tiny-imagenet-200"});
  info.class_names = checked_names((fs::path(dir) / "wnids.txt").string(), 200);
  return {std::make_shared<InMemoryDataset>(
              info, decode_all(scan_class_folders((fs::path(dir) / "train").string(), info.class_names, "images"), 3, 64, 64)),
          std::make_shared<InMemoryDataset>(
              info, decode_all(scan_tinyimagenet_val((fs::path(dir) / "val").string(), info.class_names), 3, 64, 64))};
}

// train/<wnid>/, val/<wnid>/, decoded per access (too big to cache).
LoadedSplits load_imagenet(const std::string& data_dir, DatasetInfo& info) {
  std::string dir = resolve_dir(data_dir, {"train"}, {info.name});
  FileList tr = scan_class_folders((fs::path(dir) / "train").string(), {});
  MDQ_CHECK(static_cast<int>(tr.class_names.size()) == info.num_classes,
            "data: '" << dir << "/train' has " << tr.class_names.size() << " class folders; ImageNet has 1000");
  info.class_names = tr.class_names;
  FileList va = scan_class_folders((fs::path(dir) / "val").string(), info.class_names);
  return {std::make_shared<FileDataset>(info, std::move(tr.paths), std::move(tr.labels)),
          std::make_shared<FileDataset>(info, std::move(va.paths), std::move(va.labels))};
}

// train/<class>/, test/ (or val/)<class>/; one image size; statistics from its own training set.
LoadedSplits load_folder(const std::string& data_dir, DatasetInfo& info) {
  std::string dir = resolve_dir(data_dir, {"train"}, {});
  std::vector<std::string> classes;
  if (path_exists(fs::path(dir) / "classes.txt")) classes = read_lines((fs::path(dir) / "classes.txt").string());
  FileList tr = scan_class_folders((fs::path(dir) / "train").string(), classes);
  info.class_names = tr.class_names;
  info.num_classes = static_cast<int>(tr.class_names.size());
  RawImages raw = decode_all(tr, 3, 0, 0);
  info.height = raw.height;
  info.width = raw.width;
  std::string test_dir = (fs::path(dir) / (path_exists(fs::path(dir) / "test") ? "test" : "val")).string();
  RawImages raw_test = decode_all(scan_class_folders(test_dir, info.class_names), 3, info.height, info.width);
  // A generic folder has no published statistics: use its training set's own.
  info.mean.assign(3, 0.f);
  info.std.assign(3, 1.f);
  std::vector<double> m, sd;
  auto probe = std::make_shared<InMemoryDataset>(info, std::move(raw));
  channel_stats(*probe, m, sd);
  for (int c = 0; c < 3; ++c) {
    info.mean[c] = static_cast<float>(m[c]);
    info.std[c] = static_cast<float>(std::max(sd[c], 1e-3));
  }
  probe->set_statistics(info.mean, info.std);
  return {probe, std::make_shared<InMemoryDataset>(info, std::move(raw_test))};
}

// ---------------------------------------------------------------- augmentation recipes
AugmentConfig crop_and_flip() {  // random 32x32 (or 64x64) crop of the image padded by 4, flip
  AugmentConfig a;
  a.random_crop = true;
  a.crop_padding = 4;
  a.hflip = true;
  return a;
}
AugmentConfig flip_only() {
  AugmentConfig a;
  a.hflip = true;
  return a;
}
AugmentConfig imagenet_train() {  // random-resized crop 224 + flip
  AugmentConfig a;
  a.random_resized_crop = true;
  a.out_height = a.out_width = 224;
  a.hflip = true;
  return a;
}
AugmentConfig imagenet_eval() {  // resize 256, centre crop 224
  AugmentConfig a;
  a.resize = 256;
  a.center_crop = 224;
  return a;
}

}  // namespace

// ---------------------------------------------------------------- the table
const std::vector<DatasetEntry>& dataset_table() {
  // {name, channels, height, width, classes, mean, std}, loader, train and eval augmentation.
  // MNIST and Fashion-MNIST train without augmentation (the MD paper's setting); the folder's
  // size, classes and statistics come from its data.
  static const std::vector<DatasetEntry> t = {
      {{"cifar10", 3, 32, 32, 10, {0.4914f, 0.4822f, 0.4465f}, {0.2470f, 0.2435f, 0.2616f}, {}},
       load_cifar10, crop_and_flip(), {}},
      {{"cifar100", 3, 32, 32, 100, {0.5071f, 0.4865f, 0.4409f}, {0.2673f, 0.2564f, 0.2762f}, {}},
       load_cifar100, crop_and_flip(), {}},
      {{"mnist", 1, 28, 28, 10, {0.1307f}, {0.3081f}, {}}, load_mnist, {}, {}},
      {{"fashion-mnist", 1, 28, 28, 10, {0.2860f}, {0.3530f}, {}}, load_fashion_mnist, {}, {}},
      {{"tinyimagenet", 3, 64, 64, 200, {0.4802f, 0.4481f, 0.3975f}, {0.2770f, 0.2691f, 0.2821f}, {}},
       load_tinyimagenet, crop_and_flip(), {}},
      {{"imagenet", 3, 0, 0, 1000, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}, {}},
       load_imagenet, imagenet_train(), imagenet_eval()},
      {{"folder", 3, 0, 0, 0, {}, {}, {}}, load_folder, flip_only(), {}},
  };
  return t;
}

const DatasetEntry* find_dataset(const std::string& name) {
  for (const DatasetEntry& e : dataset_table())
    if (e.info.name == name) return &e;
  return nullptr;
}

std::string known_datasets() {
  std::string s;
  for (const DatasetEntry& e : dataset_table()) s += (s.empty() ? "" : ", ") + e.info.name;
  return s;
}

DatasetInfo standard_info(const std::string& name) {
  const DatasetEntry* e = find_dataset(name);
  if (!e) MDQ_FAIL("data: unknown dataset '" << name << "'; known: " << known_datasets());
  return e->info;
}

Splits load_dataset(const std::string& name, const std::string& data_dir, uint64_t seed, double val_fraction) {
  DatasetInfo info = standard_info(name);
  const LoadedSplits full = find_dataset(name)->load(data_dir, info);
  Splits s;
  if (val_fraction > 0) {
    split_train_val(full.train, seed, val_fraction, s.train, s.val, s.balance_report);
  } else {
    s.train = full.train;
  }
  s.test = full.test;
  std::ostringstream o;
  o << (val_fraction > 0 ? s.balance_report : info.name + ": no validation split (val fraction 0)\n");
  o << "  train " << s.train->size() << (s.val ? ", val " + std::to_string(s.val->size()) : std::string()) << ", test "
    << s.test->size() << " (test per class: ";
  std::vector<int64_t> tc = class_counts(*s.test);
  auto [lo, hi] = std::minmax_element(tc.begin(), tc.end());
  o << "min " << *lo << ", max " << *hi << ")\n";
  s.balance_report = o.str();
  return s;
}

}  // namespace mdq::data

// Datasets by name, their standard statistics, the seeded stratified validation split and the
// per-class/per-channel summaries (see dataset.h for the layouts each name accepts).
#include "data/dataset.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <sstream>

#include "data/image_folder.h"
#include "engine/error.h"
#include "engine/random.h"

namespace fs = std::filesystem;

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

// ---------------------------------------------------------------- standard statistics
DatasetInfo standard_info(const std::string& name) {
  DatasetInfo d;
  d.name = name;
  if (name == "cifar10") {
    d = {name, 3, 32, 32, 10, {0.4914f, 0.4822f, 0.4465f}, {0.2470f, 0.2435f, 0.2616f}, {}};
  } else if (name == "cifar100") {
    d = {name, 3, 32, 32, 100, {0.5071f, 0.4865f, 0.4409f}, {0.2673f, 0.2564f, 0.2762f}, {}};
  } else if (name == "mnist") {
    d = {name, 1, 28, 28, 10, {0.1307f}, {0.3081f}, {}};
  } else if (name == "fashion-mnist") {
    d = {name, 1, 28, 28, 10, {0.2860f}, {0.3530f}, {}};
  } else if (name == "tinyimagenet") {
    d = {name, 3, 64, 64, 200, {0.4802f, 0.4481f, 0.3975f}, {0.2770f, 0.2691f, 0.2821f}, {}};
  } else if (name == "imagenet") {
    d = {name, 3, 0, 0, 1000, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}, {}};
  } else if (name == "folder") {
    d = {name, 3, 0, 0, 0, {}, {}, {}};  // size, classes and statistics come from the data
  } else {
    MDQ_FAIL("data: unknown dataset '" << name
                                       << "'; known: cifar10, cifar100, mnist, fashion-mnist, tinyimagenet, imagenet, folder");
  }
  return d;
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

// ---------------------------------------------------------------- loading by name
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
  for (const auto& s : subfolders)  // the shared copies come as tarballs: say how to unpack them
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

}  // namespace

Splits load_dataset(const std::string& name, const std::string& data_dir, uint64_t seed, double val_fraction) {
  DatasetInfo info = standard_info(name);
  std::shared_ptr<Dataset> full_train, test;
  if (name == "cifar10" || name == "cifar100") {
    bool c10 = name == "cifar10";
    std::string names_file = c10 ? "label_names.txt" : "fine_label_names.txt";
    std::string bin_marker = c10 ? "data_batch_1.bin" : "train.bin";
    std::string dir = resolve_dir(data_dir, {bin_marker, names_file},
                                  {name, c10 ? "cifar-10-batches-bin" : "cifar-100-binary"});
    if (path_exists(fs::path(dir) / bin_marker)) {
      if (path_exists(fs::path(dir) / names_file)) info.class_names = checked_names((fs::path(dir) / names_file).string(), info.num_classes);
      else if (c10 && path_exists(fs::path(dir) / "batches.meta.txt"))
        info.class_names = checked_names((fs::path(dir) / "batches.meta.txt").string(), 10);
      else info.class_names = numbered(info.num_classes);
      CifarKind kind = c10 ? CifarKind::Cifar10 : CifarKind::Cifar100;
      std::vector<std::string> train_files;
      if (c10) for (int b = 1; b <= 5; ++b) train_files.push_back((fs::path(dir) / ("data_batch_" + std::to_string(b) + ".bin")).string());
      else train_files.push_back((fs::path(dir) / "train.bin").string());
      full_train = concat_cifar(train_files, kind, info);
      test = concat_cifar({(fs::path(dir) / (c10 ? "test_batch.bin" : "test.bin")).string()}, kind, info);
    } else {  // the JPEG folder copy
      info.class_names = checked_names((fs::path(dir) / names_file).string(), info.num_classes);
      full_train = std::make_shared<InMemoryDataset>(
          info, decode_all(scan_class_folders((fs::path(dir) / "train").string(), info.class_names), 3, 32, 32));
      test = std::make_shared<InMemoryDataset>(
          info, decode_all(scan_class_folders((fs::path(dir) / "test").string(), info.class_names), 3, 32, 32));
    }
  } else if (name == "mnist" || name == "fashion-mnist") {
    std::string dir = resolve_dir(data_dir, {"train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"}, {name});
    info.class_names = name == "mnist" ? numbered(10)
                                       : std::vector<std::string>{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
    full_train = load_idx_pair(dir, "train", info);
    test = load_idx_pair(dir, "t10k", info);
  } else if (name == "tinyimagenet") {
    std::string dir = resolve_dir(data_dir, {"wnids.txt"}, {name, "tiny-imagenet-200"});
    info.class_names = checked_names((fs::path(dir) / "wnids.txt").string(), 200);
    full_train = std::make_shared<InMemoryDataset>(
        info, decode_all(scan_class_folders((fs::path(dir) / "train").string(), info.class_names, "images"), 3, 64, 64));
    test = std::make_shared<InMemoryDataset>(
        info, decode_all(scan_tinyimagenet_val((fs::path(dir) / "val").string(), info.class_names), 3, 64, 64));
  } else if (name == "imagenet") {
    std::string dir = resolve_dir(data_dir, {"train"}, {name});
    FileList tr = scan_class_folders((fs::path(dir) / "train").string(), {});
    MDQ_CHECK(static_cast<int>(tr.class_names.size()) == info.num_classes,
              "data: '" << dir << "/train' has " << tr.class_names.size() << " class folders; ImageNet has 1000");
    info.class_names = tr.class_names;
    FileList va = scan_class_folders((fs::path(dir) / "val").string(), info.class_names);
    full_train = std::make_shared<FileDataset>(info, std::move(tr.paths), std::move(tr.labels));
    test = std::make_shared<FileDataset>(info, std::move(va.paths), std::move(va.labels));
  } else if (name == "folder") {
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
    full_train = probe;
    test = std::make_shared<InMemoryDataset>(info, std::move(raw_test));
  }
  Splits s;
  if (val_fraction > 0) {
    split_train_val(full_train, seed, val_fraction, s.train, s.val, s.balance_report);
  } else {
    s.train = full_train;
  }
  s.test = test;
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

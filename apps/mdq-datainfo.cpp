// mdq-datainfo: loads a dataset by name and prints its class counts, the validation split's
// balance, per-channel mean/std of the training set, and loader throughput for one epoch.
//   mdq-datainfo --dataset cifar10 --data-dir /tmp/realdata [--seed 0] [--val 0.1] [--no-loader]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "data/dataset.h"
#include "data/loader.h"
#include "common/error.h"

using namespace mdq;
using namespace mdq::data;

namespace {

void print_stats(const char* what, const Dataset& ds) {
  std::vector<double> mean, std;
  channel_stats(ds, mean, std);
  std::printf("%-5s %6lld images, channel mean", what, static_cast<long long>(ds.size()));
  for (double m : mean) std::printf(" %.4f", m);
  std::printf(", std");
  for (double s : std) std::printf(" %.4f", s);
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string name, dir;
  uint64_t seed = 0;
  double val = 0.1;
  bool loader = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "mdq-datainfo: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--dataset") name = value();
    else if (a == "--data-dir") dir = value();
    else if (a == "--seed") seed = std::strtoull(value().c_str(), nullptr, 10);
    else if (a == "--val") val = std::atof(value().c_str());
    else if (a == "--no-loader") loader = false;
    else if (a == "--help" || a == "-h") {
      std::printf("usage: mdq-datainfo --dataset NAME --data-dir DIR [--seed S] [--val F] [--no-loader]\n"
                  "Prints class counts, the validation split's balance, channel mean/std and loader speed.\n");
      return 0;
    } else {
      std::fprintf(stderr, "usage: mdq-datainfo --dataset NAME --data-dir DIR [--seed S] [--val F] [--no-loader]\n");
      return 2;
    }
  }
  if (name.empty() || dir.empty()) {
    std::fprintf(stderr, "usage: mdq-datainfo --dataset NAME --data-dir DIR [--seed S] [--val F] [--no-loader]\n");
    return 2;
  }
  try {
    auto t0 = std::chrono::steady_clock::now();
    Splits s = load_dataset(name, dir, seed, val);
    double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const DatasetInfo& info = s.train->info();
    std::printf("%s: %d classes, %dx%dx%d, loaded in %.2f s\n", info.name.c_str(), info.num_classes, info.height,
                info.width, info.channels, load_s);
    std::printf("%s", s.balance_report.c_str());
    // Statistics of the whole official training set (train + val), the convention the
    // published normalisation constants follow.
    Splits full = load_dataset(name, dir, seed, 0.0);
    print_stats("train", *full.train);
    print_stats("test", *full.test);
    std::printf("standard mean/std used for normalisation:");
    for (size_t c = 0; c < info.mean.size(); ++c) std::printf(" %.4f/%.4f", info.mean[c], info.std[c]);
    std::printf("\n");
    if (loader) {
      DataLoader dl(s.train, 128, true, false, train_augment_for(name), seed, Device::CPU);
      dl.start_epoch(0);
      Batch b;
      int64_t images = 0;
      auto t1 = std::chrono::steady_clock::now();
      while (dl.next(b)) images += b.images.dim(0);
      double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
      std::printf("loader: one training epoch, %lld images in %lld batches of 128, %.2f s, %.0f images/s (%d workers, CPU)\n",
                  static_cast<long long>(images), static_cast<long long>(dl.batches_per_epoch()), sec, images / sec,
                  dl.workers());
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "mdq-datainfo: %s\n", e.what());
    return 1;
  }
  return 0;
}

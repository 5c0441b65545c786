// Loader throughput: images/s for CIFAR-sized images with the training augmentation (random
// crop pad 4 + flip + normalise) into f32 NCHW batches of 128, on the CPU for several worker
// counts and, when a GPU is present, into GPU memory. Goal: >= 100k images/s on a 16-core host.
//   bench_loader [--epochs E] [--dataset NAME --data-dir DIR]   (default: 50,000 synthetic images)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "data/loader.h"
#include "engine/device.h"

using namespace mdq;
using namespace mdq::data;

namespace {

std::shared_ptr<Dataset> synthetic_cifar(int64_t n) {
  RawImages raw;
  raw.count = n;
  raw.height = raw.width = 32;
  raw.channels = 3;
  raw.pixels.resize(static_cast<size_t>(n) * 3072);
  uint64_t s = 1;
  for (auto& p : raw.pixels) p = static_cast<uint8_t>(splitmix64(s++) >> 56);
  for (int64_t i = 0; i < n; ++i) raw.labels.push_back(static_cast<int32_t>(i % 10));
  DatasetInfo info = standard_info("cifar10");
  return std::make_shared<InMemoryDataset>(info, std::move(raw));
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double loader_rate(const std::shared_ptr<Dataset>& ds, const AugmentConfig& aug, Device dev, int workers, int epochs) {
  DataLoader dl(ds, 128, true, false, aug, 0, dev, workers);
  Batch b;
  dl.start_epoch(0);  // warm-up: threads, pinned buffers, the caching allocator
  while (dl.next(b)) {
  }
  cuda_synchronize();
  int64_t images = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int e = 1; e <= epochs; ++e) {
    dl.start_epoch(e);
    while (dl.next(b)) images += b.images.dim(0);
  }
  cuda_synchronize();
  return images / seconds_since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  int epochs = 3;
  std::string name, dir;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--epochs") epochs = std::atoi(argv[i + 1]);
    else if (a == "--dataset") name = argv[i + 1];
    else if (a == "--data-dir") dir = argv[i + 1];
  }
  std::shared_ptr<Dataset> ds;
  AugmentConfig aug = train_augment_for("cifar10");
  if (!dir.empty()) {
    Splits s = load_dataset(name.empty() ? "cifar10" : name, dir, 0, 0.0);
    ds = s.train;
    aug = train_augment_for(ds->info().name);
  } else {
    ds = synthetic_cifar(50000);
  }
  const DatasetInfo& info = ds->info();
  unsigned hw = std::thread::hardware_concurrency();
  std::printf("bench_loader: %s, %lld images %dx%dx%d, batch 128, train augmentation, %u hardware threads%s%s\n",
              info.name.c_str(), static_cast<long long>(ds->size()), info.height, info.width, info.channels, hw,
              cuda_available() ? ", GPU " : "", cuda_device_name().c_str());

  // One thread, no loader: the cost of the fused augmentation itself.
  {
    Augmenter a(aug, info);
    std::vector<float> out(a.out_floats() * 128);
    auto t0 = std::chrono::steady_clock::now();
    int64_t n = std::min<int64_t>(ds->size(), 20000);
    for (int64_t i = 0; i < n; ++i) a.apply(ds->cached(i), info.height, info.width, sample_seed(0, 0, i), out.data() + (i % 128) * a.out_floats());
    std::printf("  %-28s %12.0f images/s\n", "augment only, 1 thread", n / seconds_since(t0));
  }
  std::printf("  %-28s %12s\n", "loader", "images/s");
  std::vector<int> worker_counts{1, 2};
  for (int w : {4, 8, 15}) if (static_cast<unsigned>(w) < hw) worker_counts.push_back(w);
  for (int w : worker_counts) {
    char label[64];
    std::snprintf(label, sizeof(label), "cpu, %d worker%s", w, w == 1 ? "" : "s");
    std::printf("  %-28s %12.0f\n", label, loader_rate(ds, aug, Device::CPU, w, epochs));
  }
  if (cuda_available()) {
    for (int w : worker_counts) {
      char label[64];
      std::snprintf(label, sizeof(label), "cuda (pinned), %d worker%s", w, w == 1 ? "" : "s");
      std::printf("  %-28s %12.0f\n", label, loader_rate(ds, aug, Device::CUDA, w, epochs));
    }
  } else {
    std::printf("  (no GPU: %s)\n", cuda_unavailable_reason().c_str());
  }
  return 0;
}

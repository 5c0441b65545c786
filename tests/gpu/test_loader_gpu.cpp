// The CUDA DataLoader (pinned buffers, copies on each slot's own stream, per-slot events)
// yields exactly the CPU loader's batches, also when batches are held while their slots are
// refilled many times over, and when the engine stream runs far behind the loader's copies.
#include "data/loader.h"
#include "engine/device.h"
#include "engine/ops/matmul.h"
#include "tests/support/inputs.h"
#include "tests/support/testing.h"

using namespace mdq;
using namespace mdq::data;

namespace {

std::shared_ptr<Dataset> synthetic(int64_t n) {
  RawImages raw;
  raw.count = n;
  raw.height = raw.width = 32;
  raw.channels = 3;
  raw.pixels.resize(static_cast<size_t>(n) * 3072);
  for (size_t i = 0; i < raw.pixels.size(); ++i) raw.pixels[i] = static_cast<uint8_t>((i * 2654435761u) >> 24);
  for (int64_t i = 0; i < n; ++i) raw.labels.push_back(static_cast<int32_t>((i * 7) % 10));
  DatasetInfo info{"cifar10", 3, 32, 32, 10, {0.4914f, 0.4822f, 0.4465f}, {0.2470f, 0.2435f, 0.2616f}, {}};
  return std::make_shared<InMemoryDataset>(info, std::move(raw));
}

}  // namespace

TEST_CASE("CUDA loader batches equal the CPU loader's, bit for bit, over several epochs") {
  auto ds = synthetic(1000);
  for (int64_t bs : {1, 7, 128, 1000}) {
    for (int prefetch : {1, 2, 4}) {
      CAPTURE(bs, prefetch);
      DataLoader cpu(ds, bs, true, false, train_augment_for("cifar10"), 3, Device::CPU, 2, prefetch);
      DataLoader gpu(ds, bs, true, false, train_augment_for("cifar10"), 3, Device::CUDA, 3, prefetch);
      REQUIRE(gpu.batches_per_epoch() == cpu.batches_per_epoch());
      for (int64_t e = 0; e < 3; ++e) {
        cpu.start_epoch(e);
        gpu.start_epoch(e);
        // Hold every GPU batch of the epoch: each slot is refilled many times while earlier
        // copies may still be queued, so an early overwrite of a pinned buffer would show here.
        std::vector<Batch> held_gpu, held_cpu;
        Batch a, b;
        while (gpu.next(a)) {
          REQUIRE(cpu.next(b));
          REQUIRE(a.images.device() == Device::CUDA);
          REQUIRE(a.labels.device() == Device::CUDA);
          REQUIRE(a.labels.dtype() == DType::I32);
          REQUIRE(a.indices == b.indices);
          held_gpu.push_back(a);
          held_cpu.push_back(b);
        }
        REQUIRE_FALSE(cpu.next(b));
        for (size_t k = 0; k < held_gpu.size(); ++k) {
          INFO("epoch " << e << " batch " << k << " of " << held_gpu.size() << ": " << held_gpu[k].images.describe());
          REQUIRE(held_gpu[k].images.shape() == held_cpu[k].images.shape());
          testing::require_close(held_gpu[k].images, held_cpu[k].images, 0, 0, "images");
          REQUIRE(held_gpu[k].labels.to_vector_i32() == held_cpu[k].labels.to_vector_i32());
        }
      }
    }
  }
}

TEST_CASE("the CUDA loader allocates no new GPU memory in steady state") {
  auto ds = synthetic(512);
  DataLoader gpu(ds, 64, true, true, train_augment_for("cifar10"), 1, Device::CUDA);
  Batch b;
  gpu.start_epoch(0);
  while (gpu.next(b)) {
  }
  uint64_t before = cuda_allocator_stats().cuda_malloc_calls;
  for (int64_t e = 1; e < 4; ++e) {
    gpu.start_epoch(e);
    while (gpu.next(b)) {
    }
  }
  REQUIRE(cuda_allocator_stats().cuda_malloc_calls == before);
}

TEST_CASE("CUDA loader batches stay exact while the engine stream lags behind the copy streams") {
  // The engine stream is kept busy with a chain of GEMMs before each next(), so the slot's
  // copy-out (queued behind them) runs long after the workers have queued the next fills of the
  // slots on their own streams: a fill that did not wait for `consumed`, or a copy-out that did
  // not wait for `copied`, would hand out another batch's images.
  auto ds = synthetic(600);
  const Tensor m = testing::random_tensor({1024, 1024}, 11, -0.06f, 0.06f).to(Device::CUDA);  // keeps |lag| near 1
  for (int prefetch : {1, 3}) {
    CAPTURE(prefetch);
    DataLoader cpu(ds, 64, true, false, train_augment_for("cifar10"), 5, Device::CPU, 2, prefetch);
    DataLoader gpu(ds, 64, true, false, train_augment_for("cifar10"), 5, Device::CUDA, 4, prefetch);
    for (int64_t e = 0; e < 2; ++e) {
      cpu.start_epoch(e);
      gpu.start_epoch(e);
      std::vector<Batch> held_gpu, held_cpu;
      Batch a, b;
      Tensor lag = m;
      while (true) {
        for (int k = 0; k < 8; ++k) lag = ops::matmul(lag, m);  // ~8 x 2 GFLOP queued ahead of the copy-out
        if (!gpu.next(a)) break;
        REQUIRE(cpu.next(b));
        REQUIRE(a.indices == b.indices);
        held_gpu.push_back(a);
        held_cpu.push_back(b);
      }
      REQUIRE_FALSE(cpu.next(b));
      for (size_t k = 0; k < held_gpu.size(); ++k) {
        INFO("epoch " << e << " batch " << k);
        testing::require_close(held_gpu[k].images, held_cpu[k].images, 0, 0, "images");
        REQUIRE(held_gpu[k].labels.to_vector_i32() == held_cpu[k].labels.to_vector_i32());
      }
    }
  }
}

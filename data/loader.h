// DataLoader: batches of augmented f32 NCHW images and i32 labels, made by worker threads into a
// bounded ring of `prefetch` slots while the consumer trains on earlier batches. On the GPU each
// slot is a pinned host buffer, a device buffer and a copy stream of its own
// (kernels/device_memory.h): the worker that fills a slot also queues its host-to-device copy on
// the slot's stream, so the copy of batch k+1 runs while the engine stream computes step k.
// next() makes the engine stream wait (on the GPU, not the host) for that copy and copies the
// slot into tensors of the engine stream's own, so the caching allocator's one-stream reuse
// stays safe. Two events per slot order the rest: `copied` keeps a worker from rewriting the
// pinned buffer before its copy is done, `consumed` keeps the next copy into the device buffer
// behind the engine stream's read of it.
// Determinism: the epoch's order depends on (seed, epoch), each sample's augmentation on
// (seed, epoch, dataset index); never on thread timing, so a resumed run sees the same data.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "data/augment.h"
#include "data/dataset.h"
#include "engine/tensor.h"

namespace mdq::data {

struct Batch {
  Tensor images;                 // f32 [N, C, H, W] on the loader's device
  Tensor labels;                 // i32 [N] on the loader's device
  std::vector<int64_t> indices;  // dataset indices of the N samples, in batch order
};

class DataLoader {
 public:
  // workers 0 = auto: hardware threads - 1, at least 1. prefetch: batches made ahead (>= 1).
  DataLoader(std::shared_ptr<Dataset> ds, int64_t batch_size, bool shuffle, bool drop_last, AugmentConfig aug,
             uint64_t seed, Device device, int workers = 0, int prefetch = 4);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Data-parallel runs: this rank takes rank-th of `count` contiguous, near-equal slices of each
  // batch of batch_size (the global batch), so N ranks together see exactly the batches one
  // process would; a rank whose slice of the last, short batch is empty has one batch fewer.
  // Call before start_epoch.
  void set_shard(int rank, int count);
  // Starts (or restarts) epoch `epoch`; a running epoch is abandoned.
  void start_epoch(int64_t epoch);
  // The next batch of the epoch, or false when the epoch is done. A worker's error (an
  // undecodable image, say) is rethrown here.
  bool next(Batch& out);
  int64_t batches_per_epoch() const;
  // The epoch's sample order (dataset indices), as next() will hand it out.
  static std::vector<int64_t> epoch_order(int64_t n, bool shuffle, uint64_t seed, int64_t epoch);

  const Augmenter& augmenter() const { return augment_; }
  int workers() const { return workers_; }

 private:
  enum class SlotState { Free, Filling, Ready };
  struct Slot {
    SlotState state = SlotState::Free;
    int64_t batch = -1;
    Tensor images, labels;            // CPU device: the batch's own tensors, handed out by next()
    // CUDA device: pinned staging buffers, their device copies and the stream that copies them
    float* host_images = nullptr;
    int32_t* host_labels = nullptr;
    void* device_images = nullptr;  // caching-allocator blocks, of the capacities below
    void* device_labels = nullptr;
    size_t device_images_bytes = 0, device_labels_bytes = 0;  // what device_release wants back
    void* stream = nullptr;
    void* copied = nullptr;    // recorded on `stream` after the slot's host-to-device copies
    void* consumed = nullptr;  // recorded on the engine stream after next() has read the device buffers
    bool copy_pending = false;
  };
  void stop_workers();
  void worker_loop();
  void fill(Slot& slot, int64_t batch);
  int64_t batch_begin(int64_t b) const;  // this shard's part of global batch b
  int64_t batch_count(int64_t b) const;
  int64_t global_batch_count(int64_t b) const;

  std::shared_ptr<Dataset> ds_;
  int64_t batch_size_;
  int shard_rank_ = 0, shard_count_ = 1;
  bool shuffle_, drop_last_;
  Augmenter augment_;
  uint64_t seed_;
  Device device_;
  int cuda_device_ = 0;  // the GPU current when the loader was made; workers bind to it
  int workers_;
  int64_t epoch_ = -1;
  std::vector<int64_t> order_;
  std::vector<Slot> slots_;
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable cv_;
  int64_t next_fill_ = 0, next_out_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace mdq::data

// The threaded, prefetching DataLoader (see loader.h). Batch b always lives in slot
// b % prefetch: a worker claims the next batch only when that slot is free, and the consumer
// frees a slot when it hands the batch out (CPU) or has queued its read of the slot's device
// buffers on the engine stream (CUDA).
#include "data/loader.h"

#include <algorithm>

#include "common/error.h"
#include "engine/backend/registry.h"
#include "engine/device.h"
#include "engine/random.h"

namespace mdq::data {
namespace {

const DatasetInfo& checked_info(const std::shared_ptr<Dataset>& ds) {
  MDQ_CHECK(ds != nullptr, "DataLoader: dataset is null");
  return ds->info();
}

// The CUDA backend's memory services (kernels/device_memory.h); only reached for a CUDA loader.
const backend::CudaBackend& gpu() { return backend::cuda(); }

}  // namespace

std::vector<int64_t> DataLoader::epoch_order(int64_t n, bool shuffle, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  if (shuffle) {
    Rng rng(splitmix64(seed ^ 0x6f726465720aull) + static_cast<uint64_t>(epoch) * 0x9E3779B97F4A7C15ull);
    for (int64_t k = n; k > 1; --k) std::swap(order[k - 1], order[rng.below(static_cast<uint64_t>(k))]);
  }
  return order;
}

DataLoader::DataLoader(std::shared_ptr<Dataset> ds, int64_t batch_size, bool shuffle, bool drop_last, AugmentConfig aug,
                       uint64_t seed, Device device, int workers, int prefetch)
    : ds_(std::move(ds)),
      batch_size_(batch_size),
      shuffle_(shuffle),
      drop_last_(drop_last),
      augment_(aug, checked_info(ds_)),
      seed_(seed),
      device_(device) {
  MDQ_CHECK(batch_size_ > 0, "DataLoader: batch_size " << batch_size_ << " must be positive");
  MDQ_CHECK(prefetch >= 1, "DataLoader: prefetch " << prefetch << " must be at least 1");
  MDQ_CHECK(ds_->size() > 0, "DataLoader: dataset '" << ds_->info().name << "' is empty");
  workers_ = workers > 0 ? workers : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) - 1);
  slots_.resize(static_cast<size_t>(prefetch));
  if (device_ == Device::CUDA) {
    MDQ_CHECK(cuda_available(), "DataLoader: device cuda requested but " << cuda_unavailable_reason());
    cuda_device_ = gpu().current_device();
    const size_t image_bytes = static_cast<size_t>(batch_size_) * augment_.out_floats() * sizeof(float);
    const size_t label_bytes = static_cast<size_t>(batch_size_) * sizeof(int32_t);
    for (Slot& s : slots_) {
      s.host_images = static_cast<float*>(gpu().pinned_allocate(image_bytes));
      s.host_labels = static_cast<int32_t*>(gpu().pinned_allocate(label_bytes));
      s.device_images = gpu().device_allocate(image_bytes, &s.device_images_bytes);
      s.device_labels = gpu().device_allocate(label_bytes, &s.device_labels_bytes);
      s.stream = gpu().stream_create();
      s.copied = gpu().event_create();
      s.consumed = gpu().event_create();
    }
  }
}

DataLoader::~DataLoader() {
  stop_workers();
  if (device_ != Device::CUDA) return;
  for (Slot& s : slots_) {  // these never throw: errors in a destructor are ignored
    gpu().stream_destroy(s.stream);   // waits for the slot's copies
    gpu().event_destroy(s.consumed);  // waits for the engine stream's last read of the slot
    gpu().event_destroy(s.copied);
    // Both streams are done with the blocks, so the cache may hand them to the engine stream.
    if (s.device_images) gpu().device_release(s.device_images, s.device_images_bytes);
    if (s.device_labels) gpu().device_release(s.device_labels, s.device_labels_bytes);
    gpu().pinned_release(s.host_images);
    gpu().pinned_release(s.host_labels);
  }
}

int64_t DataLoader::batches_per_epoch() const {
  int64_t n = ds_->size();
  int64_t batches = drop_last_ ? n / batch_size_ : (n + batch_size_ - 1) / batch_size_;
  if (batches > 0 && batch_count(batches - 1) == 0) --batches;  // this shard's slice of the last one is empty
  return batches;
}

void DataLoader::set_shard(int rank, int count) {
  MDQ_CHECK(count >= 1 && rank >= 0 && rank < count, "DataLoader::set_shard: rank " << rank << " of " << count);
  MDQ_CHECK(count <= batch_size_, "DataLoader: " << count << " ranks cannot share batches of " << batch_size_);
  stop_workers();
  shard_rank_ = rank;
  shard_count_ = count;
  epoch_ = -1;
}

int64_t DataLoader::global_batch_count(int64_t b) const {
  return std::min(batch_size_, ds_->size() - b * batch_size_);
}
int64_t DataLoader::batch_begin(int64_t b) const {
  return b * batch_size_ + global_batch_count(b) * shard_rank_ / shard_count_;
}
int64_t DataLoader::batch_count(int64_t b) const {
  const int64_t n = global_batch_count(b);
  return n * (shard_rank_ + 1) / shard_count_ - n * shard_rank_ / shard_count_;
}

void DataLoader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void DataLoader::start_epoch(int64_t epoch) {
  stop_workers();
  epoch_ = epoch;
  order_ = epoch_order(ds_->size(), shuffle_, seed_, epoch);
  next_fill_ = next_out_ = 0;
  stop_ = false;
  error_ = nullptr;
  for (Slot& s : slots_) {
    s.state = SlotState::Free;
    s.batch = -1;
  }
  int64_t n_threads = std::min<int64_t>(workers_, batches_per_epoch());
  for (int64_t t = 0; t < n_threads; ++t) threads_.emplace_back([this] { worker_loop(); });
}

void DataLoader::worker_loop() {
  // A new thread starts on device 0; one process per GPU (DESIGN.md scale-out) may use another.
  if (device_ == Device::CUDA && !gpu().set_current_device(cuda_device_)) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!error_) error_ = std::make_exception_ptr(Error("DataLoader: worker cannot select CUDA device " + std::to_string(cuda_device_)));
    stop_ = true;
    cv_.notify_all();
    return;
  }
  const int64_t nb = batches_per_epoch();
  const size_t P = slots_.size();
  while (true) {
    int64_t b;
    Slot* slot;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || next_fill_ >= nb || slots_[next_fill_ % P].state == SlotState::Free; });
      if (stop_ || next_fill_ >= nb) return;
      b = next_fill_++;
      slot = &slots_[b % P];
      slot->state = SlotState::Filling;
      slot->batch = b;
    }
    try {
      fill(*slot, b);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
      stop_ = true;
      cv_.notify_all();
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      slot->state = SlotState::Ready;
    }
    cv_.notify_all();
  }
}

void DataLoader::fill(Slot& slot, int64_t b) {
  const int64_t n = batch_count(b), begin = batch_begin(b);
  const DatasetInfo& info = ds_->info();
  const size_t F = augment_.out_floats();
  float* images;
  int32_t* labels;
  if (device_ == Device::CUDA) {
    if (slot.copy_pending) gpu().event_wait(slot.copied);  // the pinned buffer's last copy is done
    slot.copy_pending = false;
    images = slot.host_images;
    labels = slot.host_labels;
  } else {
    slot.images = Tensor::empty({n, augment_.channels(), augment_.out_height(), augment_.out_width()});
    slot.labels = Tensor::empty({n}, DType::I32);
    images = slot.images.data<float>();
    labels = slot.labels.data<int32_t>();
  }
  Image tmp;
  for (int64_t k = 0; k < n; ++k) {
    int64_t idx = order_[static_cast<size_t>(begin + k)];
    labels[k] = ds_->label(idx);
    uint64_t s = sample_seed(seed_, epoch_, idx);
    if (const uint8_t* p = ds_->cached(idx)) {
      augment_.apply(p, info.height, info.width, s, images + static_cast<size_t>(k) * F);
    } else {
      ds_->image(idx, tmp);
      MDQ_CHECK(tmp.channels == augment_.channels(), "DataLoader: sample " << idx << " of '" << info.name << "' has "
                                                                           << tmp.channels << " channels, expected "
                                                                           << augment_.channels());
      augment_.apply(tmp.pixels.data(), tmp.height, tmp.width, s, images + static_cast<size_t>(k) * F);
    }
  }
  if (device_ == Device::CUDA) {
    using kernels::CopyKind;
    // The copy into the device buffers waits (on the GPU) for the engine stream's read of the
    // slot's previous batch; then `copied` marks it for next() and for this slot's next fill.
    gpu().stream_wait_event(slot.stream, slot.consumed);
    gpu().copy_async_on(slot.stream, slot.device_images, images, static_cast<size_t>(n) * F * sizeof(float),
                        CopyKind::HostToDevice);
    gpu().copy_async_on(slot.stream, slot.device_labels, labels, static_cast<size_t>(n) * sizeof(int32_t),
                        CopyKind::HostToDevice);
    gpu().event_record_on(slot.stream, slot.copied);
    slot.copy_pending = true;
  }
}

bool DataLoader::next(Batch& out) {
  MDQ_CHECK(epoch_ >= 0, "DataLoader::next: call start_epoch(epoch) first");
  if (next_out_ >= batches_per_epoch()) return false;
  Slot& slot = slots_[static_cast<size_t>(next_out_ % static_cast<int64_t>(slots_.size()))];
  {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return error_ || (slot.state == SlotState::Ready && slot.batch == next_out_); });
    if (error_) {
      std::exception_ptr e = error_;
      lock.unlock();
      stop_workers();
      std::rethrow_exception(e);
    }
  }
  const int64_t n = batch_count(next_out_), begin = batch_begin(next_out_);
  out.indices.assign(order_.begin() + begin, order_.begin() + begin + n);
  if (device_ == Device::CUDA) {
    using kernels::CopyKind;
    out.images = Tensor::empty({n, augment_.channels(), augment_.out_height(), augment_.out_width()}, DType::F32, Device::CUDA);
    out.labels = Tensor::empty({n}, DType::I32, Device::CUDA);
    gpu().stream_wait_event(nullptr, slot.copied);
    gpu().copy_async(out.images.raw(), slot.device_images, out.images.nbytes(), CopyKind::DeviceToDevice);
    gpu().copy_async(out.labels.raw(), slot.device_labels, out.labels.nbytes(), CopyKind::DeviceToDevice);
    gpu().event_record(slot.consumed);
  } else {
    out.images = std::move(slot.images);
    out.labels = std::move(slot.labels);
    slot.images = Tensor();
    slot.labels = Tensor();
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    slot.state = SlotState::Free;
    ++next_out_;
  }
  cv_.notify_all();
  return true;
}

}  // namespace mdq::data

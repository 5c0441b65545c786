#include "engine/storage.h"

#include <atomic>
#include <cstdlib>

#include "common/error.h"
#include "engine/backend/registry.h"
#include "engine/device.h"

namespace mdq {
namespace {
std::atomic<size_t> g_host_in_use{0}, g_host_peak{0};

void host_allocated(size_t bytes) {
  const size_t now = g_host_in_use.fetch_add(bytes) + bytes;
  size_t peak = g_host_peak.load();
  while (now > peak && !g_host_peak.compare_exchange_weak(peak, now)) {
  }
}
}  // namespace

Storage::Storage(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  if (device == Device::CPU) {
    capacity_ = (bytes + 63) / 64 * 64;
    data_ = std::aligned_alloc(64, capacity_ ? capacity_ : 64);
    MDQ_CHECK(data_ != nullptr, "out of host memory allocating " << bytes << " bytes");
    host_allocated(capacity_);
    return;
  }
  MDQ_CHECK(cuda_available(), "cannot allocate a CUDA tensor: " << cuda_unavailable_reason());
  data_ = backend::cuda_impl("cuda tensor allocation", &backend::CudaBackend::device_allocate)(bytes, &capacity_);
}

Storage::Storage(std::shared_ptr<Storage> base, size_t offset, size_t bytes)
    : bytes_(bytes), device_(base->device()), base_(std::move(base)) {
  MDQ_CHECK(offset + bytes <= base_->bytes(), "Storage window [" << offset << ", " << offset + bytes
                                                                 << ") outside a block of " << base_->bytes() << " bytes");
  data_ = static_cast<char*>(base_->data()) + offset;
}

Storage::~Storage() {
  if (base_) return;  // a window: base_ owns the block
  if (device_ == Device::CPU) {
    std::free(data_);
    g_host_in_use.fetch_sub(capacity_);
  } else backend::cuda().device_release(data_, capacity_);  // registered: the block came from device_allocate
}

CudaAllocatorStats cuda_allocator_stats() {
  return cuda_available() ? backend::cuda().allocator_stats() : CudaAllocatorStats{};
}

void cuda_allocator_reset_peak() {
  if (cuda_available()) backend::cuda().allocator_reset_peak();
}

HostTensorMemory host_tensor_memory() { return {g_host_in_use.load(), g_host_peak.load()}; }
void host_tensor_memory_reset_peak() { g_host_peak.store(g_host_in_use.load()); }

void cuda_allocator_release_cache() {
  if (cuda_available()) backend::cuda().allocator_release_cache();
}

}  // namespace mdq

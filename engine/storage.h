// Reference-counted memory blocks. CPU blocks come from the heap; CUDA blocks from a caching
// allocator in the CUDA backend (kernels/device_memory.h), so a training step in steady state
// never calls cudaMalloc (DESIGN.md §2).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "engine/dtype.h"
#include "kernels/device_memory.h"

namespace mdq {

class Storage {
 public:
  Storage(size_t bytes, Device device);
  // A window of `bytes` bytes at `offset` into `base`, which it keeps alive; frees nothing.
  Storage(std::shared_ptr<Storage> base, size_t offset, size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  size_t capacity_ = 0;  // the rounded size the caching allocator handed out
  Device device_;
  std::shared_ptr<Storage> base_;  // set for a window: the block belongs to base_
};

// Counters of the CUDA caching allocator (kernels/device_memory.h), for tests and benchmarks;
// all zero without a GPU.
using CudaAllocatorStats = kernels::AllocatorStats;
CudaAllocatorStats cuda_allocator_stats();
// Returns every cached (unused) block to the driver.
void cuda_allocator_release_cache();
// peak_bytes_in_use starts again from the bytes in use now (as torch.cuda.reset_peak_memory_stats).
void cuda_allocator_reset_peak();

// The bytes of CPU tensors alive now and at most since the last reset (every CPU Storage counts),
// for the CPU side of the same measurements (bench_train_step --device cpu).
struct HostTensorMemory {
  size_t bytes_in_use = 0, peak_bytes_in_use = 0;
};
HostTensorMemory host_tensor_memory();
void host_tensor_memory_reset_peak();

}  // namespace mdq

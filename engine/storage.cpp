#include "engine/storage.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

#include "engine/device.h"
#include "common/error.h"
#ifdef MDQ_HAS_CUDA
#include "kernels/cuda_common.h"
#endif

namespace mdq {
namespace {

#ifdef MDQ_HAS_CUDA
// Caching allocator: freed blocks go to a free list keyed by their rounded size and are handed
// out again for a request of the same rounded size. All GPU work runs on one stream, so a block
// freed on the host may be reused by the next kernel without a synchronisation: the stream
// orders the old reads before the new writes.
class CudaCache {
 public:
  static size_t round(size_t bytes) {
    if (bytes < (1u << 20)) return (bytes + 511) / 512 * 512;  // small: 512-byte steps
    return (bytes + (2u << 20) - 1) / (2u << 20) * (2u << 20);  // large: 2 MiB steps
  }
  void* allocate(size_t capacity) {
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.allocations;
    stats_.bytes_in_use += capacity;
    auto it = free_.find(capacity);
    if (it != free_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      stats_.bytes_cached -= capacity;
      return p;
    }
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, capacity);
    if (e == cudaErrorMemoryAllocation) {  // give the cache back and try once more
      cudaGetLastError();
      release_locked();
      e = cudaMalloc(&p, capacity);
    }
    if (e != cudaSuccess) {
      stats_.bytes_in_use -= capacity;
      cuda::throw_cuda_error(e, "cudaMalloc", __FILE__, __LINE__);
    }
    ++stats_.cuda_malloc_calls;
    return p;
  }
  void release(void* p, size_t capacity) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_[capacity].push_back(p);
    stats_.bytes_in_use -= capacity;
    stats_.bytes_cached += capacity;
  }
  void release_all() {
    std::lock_guard<std::mutex> lock(mutex_);
    release_locked();
  }
  CudaAllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

 private:
  void release_locked() {
    cudaStreamSynchronize(cuda::stream());
    for (auto& [size, blocks] : free_)
      for (void* p : blocks) cudaFree(p);
    free_.clear();
    stats_.bytes_cached = 0;
  }
  std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_;
  CudaAllocatorStats stats_;
};

CudaCache& cache() {
  static CudaCache* c = new CudaCache();  // never destroyed: blocks may outlive static teardown
  return *c;
}
#endif

}  // namespace

Storage::Storage(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  if (device == Device::CPU) {
    capacity_ = (bytes + 63) / 64 * 64;
    data_ = std::aligned_alloc(64, capacity_ ? capacity_ : 64);
    MDQ_CHECK(data_ != nullptr, "out of host memory allocating " << bytes << " bytes");
    return;
  }
#ifdef MDQ_HAS_CUDA
  MDQ_CHECK(cuda_available(), "cannot allocate a CUDA tensor: " << cuda_unavailable_reason());
  capacity_ = CudaCache::round(bytes ? bytes : 1);
  data_ = cache().allocate(capacity_);
#else
  MDQ_FAIL("cannot allocate a CUDA tensor: " << cuda_unavailable_reason());
#endif
}

Storage::~Storage() {
  if (device_ == Device::CPU) {
    std::free(data_);
    return;
  }
#ifdef MDQ_HAS_CUDA
  cache().release(data_, capacity_);
#endif
}

CudaAllocatorStats cuda_allocator_stats() {
#ifdef MDQ_HAS_CUDA
  return cache().stats();
#else
  return {};
#endif
}

void cuda_allocator_release_cache() {
#ifdef MDQ_HAS_CUDA
  if (cuda_available()) cache().release_all();
#endif
}

}  // namespace mdq

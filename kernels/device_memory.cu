// The CUDA backend's memory and runtime services (kernels/device_memory.h).
#include "kernels/device_memory.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "common/error.h"
#include "kernels/backend.h"
#include "kernels/cuda_common.h"

namespace mdq::kernels {
namespace {

// cudaMalloc, also while this thread captures a CUDA graph (kernels/cuda_graph.cu): a capture takes
// new blocks for its private pool, and cudaMalloc (never part of a graph) is allowed during a
// capture only in relaxed mode, so the thread switches to it for the call.
cudaError_t malloc_even_in_capture(void** p, size_t bytes) {
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  cudaThreadExchangeStreamCaptureMode(&mode);
  const cudaError_t e = cudaMalloc(p, bytes);
  cudaThreadExchangeStreamCaptureMode(&mode);
  return e;
}

// All GPU work runs on one stream, so a block freed on the host may be reused by the next kernel
// without a synchronisation: the stream orders the old reads before the new writes. (The data
// loader's copy streams only touch blocks it holds from construction to destruction, and it
// releases them after both streams are done with them: data/loader.cpp.)
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
    stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
    FreeLists& lists = active_ ? pools_[active_] : free_;
    auto it = lists.find(capacity);
    if (it != lists.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      stats_.bytes_cached -= capacity;
      return p;
    }
    void* p = nullptr;
    cudaError_t e = malloc_even_in_capture(&p, capacity);
    if (e == cudaErrorMemoryAllocation) {  // give the cache back and try once more
      cudaGetLastError();
      release_locked();
      e = malloc_even_in_capture(&p, capacity);
    }
    if (e != cudaSuccess) {
      stats_.bytes_in_use -= capacity;
      cuda::throw_cuda_error(e, "cudaMalloc", __FILE__, __LINE__);
    }
    ++stats_.cuda_malloc_calls;
    if (active_) owner_[p] = active_;
    return p;
  }
  void release(void* p, size_t capacity) {
    std::lock_guard<std::mutex> lock(mutex_);
    FreeLists* lists = &free_;
    if (!owner_.empty()) {
      auto o = owner_.find(p);
      if (o != owner_.end()) {
        auto pool = pools_.find(o->second);
        if (pool != pools_.end()) lists = &pool->second;
        else owner_.erase(o);  // its pool was released: the block joins the shared cache
      }
    }
    (*lists)[capacity].push_back(p);
    stats_.bytes_in_use -= capacity;
    stats_.bytes_cached += capacity;
  }
  int pool_begin() {
    std::lock_guard<std::mutex> lock(mutex_);
    MDQ_CHECK(active_ == 0, "allocator: a private pool (" << active_ << ") is already active");
    active_ = next_pool_++;
    pools_[active_];
    return active_;
  }
  void pool_end() {
    std::lock_guard<std::mutex> lock(mutex_);
    active_ = 0;
  }
  void pool_release(int id) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto pool = pools_.find(id);
    if (pool == pools_.end()) return;
    for (auto& [size, blocks] : pool->second)
      for (void* p : blocks) {
        owner_.erase(p);
        free_[size].push_back(p);
      }
    pools_.erase(pool);
    if (active_ == id) active_ = 0;
  }
  void release_all() {
    std::lock_guard<std::mutex> lock(mutex_);
    release_locked();
  }
  AllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_bytes_in_use = stats_.bytes_in_use;
  }

 private:
  void release_locked() {
    cudaStreamSynchronize(cuda::stream());
    for (auto& [size, blocks] : free_)
      for (void* p : blocks) {
        cudaFree(p);
        stats_.bytes_cached -= size;
      }
    free_.clear();
  }
  using FreeLists = std::map<size_t, std::vector<void*>>;  // rounded size -> free blocks
  std::mutex mutex_;
  FreeLists free_;                      // the shared cache
  std::map<int, FreeLists> pools_;      // private pools by id
  std::unordered_map<void*, int> owner_;  // every block a private pool took from cudaMalloc
  int active_ = 0, next_pool_ = 1;      // the pool allocations come from now (0: the shared cache)
  AllocatorStats stats_;
};

CudaCache& cache() {
  static CudaCache* c = new CudaCache();  // never destroyed: blocks may outlive static teardown
  return *c;
}

cudaMemcpyKind memcpy_kind(CopyKind kind) {
  return kind == CopyKind::HostToDevice   ? cudaMemcpyHostToDevice
         : kind == CopyKind::DeviceToHost ? cudaMemcpyDeviceToHost
                                          : cudaMemcpyDeviceToDevice;
}

// A side stream's handle, or the engine stream for null (kernels/device_memory.h).
cudaStream_t stream_or_engine(void* stream) { return stream ? static_cast<cudaStream_t>(stream) : cuda::stream(); }

}  // namespace

DeviceProbe probe_device() {
  DeviceProbe r;
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    r.reason = std::string("no usable CUDA device: cudaGetDeviceCount failed: ") + cudaGetErrorString(e);
    cudaGetLastError();  // clear the sticky error so later calls are not confused by it
  } else if (count == 0) {
    r.reason = "no usable CUDA device: cudaGetDeviceCount found 0 devices";
  } else {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
      r.available = true;
      r.count = count;
      r.name = std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ")";
    } else {
      r.reason = "no usable CUDA device: cudaGetDeviceProperties failed";
    }
  }
  return r;
}

void device_synchronize() { cudaDeviceSynchronize(); }

int current_device() {
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

bool set_current_device(int device) { return cudaSetDevice(device) == cudaSuccess; }

void* device_allocate(size_t bytes, size_t* capacity) {
  *capacity = CudaCache::round(bytes ? bytes : 1);
  return cache().allocate(*capacity);
}

void device_release(void* p, size_t capacity) { cache().release(p, capacity); }
AllocatorStats allocator_stats() { return cache().stats(); }
void allocator_release_cache() { cache().release_all(); }
void allocator_reset_peak() { cache().reset_peak(); }
int allocator_pool_begin() { return cache().pool_begin(); }
void allocator_pool_end() { cache().pool_end(); }
void allocator_pool_release(int id) { cache().pool_release(id); }

void copy(void* dst, const void* src, size_t bytes, CopyKind kind) {
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, memcpy_kind(kind), cuda::stream()));
  if (kind != CopyKind::DeviceToDevice) CUDA_CHECK(cudaStreamSynchronize(cuda::stream()));
}

void copy_async(void* dst, const void* src, size_t bytes, CopyKind kind) { copy_async_on(nullptr, dst, src, bytes, kind); }

void zero(void* p, size_t bytes) { CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, cuda::stream())); }

void* pinned_allocate(size_t bytes) {
  void* p = nullptr;
  CUDA_CHECK(cudaHostAlloc(&p, bytes, cudaHostAllocDefault));
  return p;
}

void pinned_release(void* p) {
  if (p) cudaFreeHost(p);
}

void* event_create() {
  cudaEvent_t e;
  CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return e;
}

void event_record(void* event) { event_record_on(nullptr, event); }
void event_wait(void* event) { CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event))); }

void event_destroy(void* event) {
  if (!event) return;
  cudaEventSynchronize(static_cast<cudaEvent_t>(event));
  cudaEventDestroy(static_cast<cudaEvent_t>(event));
}

void* stream_create() {
  cudaStream_t s;
  CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return s;
}

void stream_destroy(void* stream) {
  if (!stream) return;
  cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
  cudaStreamDestroy(static_cast<cudaStream_t>(stream));
}

void copy_async_on(void* stream, void* dst, const void* src, size_t bytes, CopyKind kind) {
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, memcpy_kind(kind), stream_or_engine(stream)));
}

void event_record_on(void* stream, void* event) {
  CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event), stream_or_engine(stream)));
}

void stream_wait_event(void* stream, void* event) {
  CUDA_CHECK(cudaStreamWaitEvent(stream_or_engine(stream), static_cast<cudaEvent_t>(event), 0));
}

void register_device_memory(CudaBackend& b) {
  b.probe_device = probe_device;
  b.device_synchronize = device_synchronize;
  b.current_device = current_device;
  b.set_current_device = set_current_device;
  b.device_allocate = device_allocate;
  b.device_release = device_release;
  b.allocator_stats = allocator_stats;
  b.allocator_release_cache = allocator_release_cache;
  b.allocator_reset_peak = allocator_reset_peak;
  b.copy = copy;
  b.copy_async = copy_async;
  b.zero = zero;
  b.pinned_allocate = pinned_allocate;
  b.pinned_release = pinned_release;
  b.event_create = event_create;
  b.event_record = event_record;
  b.event_wait = event_wait;
  b.event_destroy = event_destroy;
  b.stream_create = stream_create;
  b.stream_destroy = stream_destroy;
  b.copy_async_on = copy_async_on;
  b.event_record_on = event_record_on;
  b.stream_wait_event = stream_wait_event;
}

}  // namespace mdq::kernels

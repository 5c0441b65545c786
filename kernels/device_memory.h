// The CUDA backend's memory and runtime services: device queries, the caching allocator behind
// CUDA tensors, copies and fills on the stream, and the pinned host buffers and events that let
// the data loader overlap its copies with training. The engine reaches them through the
// registry (kernels/backend.h): engine/device.cpp, engine/storage.cpp, engine/tensor.cpp,
// engine/ops/loss.cpp and data/loader.cpp. Plain C++; implemented in kernels/device_memory.cu.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace mdq::kernels {

// Is there a usable CUDA device? Any runtime error (no driver, driver too old, no device)
// counts as "no": `reason` keeps the runtime's own message. Never throws.
struct DeviceProbe {
  bool available = false;
  std::string name;    // "NVIDIA H100 80GB HBM3 (sm_90)"
  std::string reason;  // why not, when !available
  int count = 0;       // visible devices, when available
};
DeviceProbe probe_device();
void device_synchronize();  // blocks until all queued GPU work is done
int current_device();
bool set_current_device(int device);  // for a new thread; false when the runtime refuses

// ---- the caching allocator. Freed blocks go to a free list keyed by their rounded size and are
// handed out again for a request of the same rounded size, so a training step in steady state
// never calls cudaMalloc (DESIGN.md §2).
struct AllocatorStats {
  uint64_t cuda_malloc_calls = 0;  // real cudaMalloc calls so far
  uint64_t allocations = 0;        // blocks handed out so far
  size_t bytes_in_use = 0;
  size_t bytes_cached = 0;        // freed blocks kept for reuse
  size_t peak_bytes_in_use = 0;   // the most in use at once since allocator_reset_peak()
};
// At least `bytes` (1 for 0); *capacity receives the rounded size to give back to device_release.
void* device_allocate(size_t bytes, size_t* capacity);
void device_release(void* p, size_t capacity);

// n elements of T for the length of one call (a kernel's partials, an operand's bf16 copy), from
// the caching allocator: no cudaMalloc in steady state. It goes back while kernels may still use
// it: all work is on one stream, so the block's next user runs after them. (.cu files only.)
template <class T>
class DeviceScratch {
 public:
  explicit DeviceScratch(int64_t n)
      : p_(static_cast<T*>(device_allocate(static_cast<size_t>(n) * sizeof(T), &capacity_))) {}
  ~DeviceScratch() { device_release(p_, capacity_); }
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;
  T* get() const { return p_; }

 private:
  size_t capacity_ = 0;  // before p_: the constructor fills it while allocating p_
  T* p_;
};
AllocatorStats allocator_stats();
void allocator_release_cache();  // returns every cached (unused) block of the shared cache to the driver
void allocator_reset_peak();     // peak_bytes_in_use starts again from bytes_in_use

// ---- private pools, for CUDA graphs (kernels/cuda_graph.h). Between pool_begin and pool_end every
// allocation comes from a new pool (its own free blocks, else cudaMalloc), and a block of that
// pool goes back to it alone when freed, so no allocation outside the graph lands in the graph's
// memory. pool_release hands the pool's free blocks to the shared cache; its blocks still in use
// join the cache when they are freed. Cached pool blocks count in bytes_cached.
int allocator_pool_begin();  // returns the pool's id
void allocator_pool_end();
void allocator_pool_release(int id);

// ---- copies and fills, queued on the stream
enum class CopyKind { HostToDevice, DeviceToHost, DeviceToDevice };
// Returns once a copy that touches host memory is done: that memory may be pageable and freed
// right after. Device-to-device copies only queue.
void copy(void* dst, const void* src, size_t bytes, CopyKind kind);
// Only queues: the host side must be pinned (pinned_allocate) and left alone until an event
// recorded after the copy has happened.
void copy_async(void* dst, const void* src, size_t bytes, CopyKind kind);
void zero(void* p, size_t bytes);

// ---- pinned host memory and events (opaque handles), for copies that overlap with compute
void* pinned_allocate(size_t bytes);
void pinned_release(void* p);  // never throws (destructors call it)
void* event_create();
void event_record(void* event);   // marks the work queued on the stream so far
void event_wait(void* event);     // blocks the host until that work is done
void event_destroy(void* event);  // waits for it first; never throws

// ---- side streams (opaque handles), for copies that run beside the engine stream's kernels: the
// data loader's workers copy each batch on a stream of its own and the engine stream waits on an
// event for it, so the copy of batch k+1 overlaps step k instead of queueing behind it.
// A null `stream` below is the engine stream (copy_async and event_record are those calls).
void* stream_create();
void stream_destroy(void* stream);  // waits for its work first; never throws
void copy_async_on(void* stream, void* dst, const void* src, size_t bytes, CopyKind kind);
void event_record_on(void* stream, void* event);  // marks the work queued on `stream` so far
// Work queued on `stream` after this call waits, on the GPU, for the work that `event` marks; the
// host does not wait. An event never recorded counts as done.
void stream_wait_event(void* stream, void* event);

}  // namespace mdq::kernels

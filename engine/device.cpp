#include "engine/device.h"

#ifdef MDQ_HAS_CUDA
#include <cuda_runtime.h>
#endif

namespace mdq {
namespace {

struct CudaProbe {
  bool available = false;
  std::string reason;
  std::string name;
  int count = 0;
};

const CudaProbe& probe() {
  static const CudaProbe p = [] {
    CudaProbe r;
#ifdef MDQ_HAS_CUDA
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
#else
    r.reason = "this build has no CUDA backend (configured without nvcc or with -DMDQ_CUDA=OFF)";
#endif
    return r;
  }();
  return p;
}

}  // namespace

bool cuda_available() { return probe().available; }
const std::string& cuda_unavailable_reason() { return probe().reason; }
std::string cuda_device_name() { return probe().name; }
int cuda_device_count() { return probe().count; }

void cuda_synchronize() {
#ifdef MDQ_HAS_CUDA
  if (cuda_available()) cudaDeviceSynchronize();
#endif
}

}  // namespace mdq

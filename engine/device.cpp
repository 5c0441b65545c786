#include "engine/device.h"

#include "engine/backend/registry.h"

namespace mdq {
namespace {

const kernels::DeviceProbe& probe() {
  static const kernels::DeviceProbe p = [] {
    if (!backend::has_cuda())
      return kernels::DeviceProbe{false, "",
                                  "this build has no CUDA backend (configured without nvcc or with -DMDQ_CUDA=OFF)"};
    return backend::cuda().probe_device();
  }();
  return p;
}

}  // namespace

bool cuda_available() { return probe().available; }
const std::string& cuda_unavailable_reason() { return probe().reason; }
std::string cuda_device_name() { return probe().name; }
int cuda_device_count() { return probe().count; }

void cuda_synchronize() {
  if (cuda_available()) backend::cuda().device_synchronize();
}

}  // namespace mdq

// A CUDA driver function looked up by name through the runtime (cudaGetDriverEntryPointByVersion),
// so that mdq links only the runtime and still reaches driver-only calls such as the TMA tensor
// map encoders (kernels/stem_conv_mma.cu, kernels/w1a16_wgmma_tma.cu).
#pragma once
#include <cuda_runtime.h>

namespace mdq::cuda {

// Fn (a PFN_* type of <cudaTypedefs.h>) for driver function `name` of ABI `version`; null where
// the driver lacks it (the caller then takes a path without it).
template <class Fn>
Fn driver_entry_point(const char* name, unsigned version = 12000) {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found{};
  if (cudaGetDriverEntryPointByVersion(name, &fn, version, cudaEnableDefault, &found) != cudaSuccess ||
      found != cudaDriverEntryPointSuccess) {
    (void)cudaGetLastError();
    return nullptr;
  }
  return reinterpret_cast<Fn>(fn);
}

}  // namespace mdq::cuda

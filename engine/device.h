// Is there a usable CUDA device? Answers once, with the reason when there is none.
#pragma once
#include <string>

namespace mdq {

// True when this build has the CUDA backend and cudaGetDeviceCount finds at least one device.
// Any error from the runtime (no driver, driver too old, no device) counts as "no GPU"; the
// runtime's own message is kept for cuda_unavailable_reason() so skipped tests can say why.
bool cuda_available();
const std::string& cuda_unavailable_reason();
std::string cuda_device_name();  // "NVIDIA H100 80GB HBM3 (sm_90)", or "" without a GPU
int cuda_device_count();         // visible CUDA devices; 0 without a usable one

// Blocks until all queued GPU work is done (no-op without CUDA).
void cuda_synchronize();

}  // namespace mdq

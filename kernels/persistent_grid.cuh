// The launch shape of the persistent tensor-core kernels (binary_conv_wgmma.cu): opt the kernel
// in to its dynamic shared memory, then as many CTAs as fit on the GPU at once, spread over the
// channel slices (blockIdx.y); each walks row tiles blockIdx.x, + gridDim.x, ...
#pragma once
#include <algorithm>
#include <cstddef>
#include <map>
#include <tuple>

#include "kernels/cuda_common.h"

namespace mdq::kernels {

// How many CTAs of `threads` threads and `smem` bytes of dynamic shared memory fit an SM at once
// (0: none), asked of the driver once per kernel, block size and shared memory (launches ask it
// every time). Dynamic shared memory above 48 KB needs the opt-in; raised once per kernel and size.
template <class Kernel>
int resident_ctas(Kernel kernel, int threads, size_t smem) {
  static std::map<const void*, size_t> opted;
  static std::map<std::tuple<const void*, int, size_t>, int> known;
  const void* k = reinterpret_cast<const void*>(kernel);
  if (auto it = known.find({k, threads, smem}); it != known.end()) return it->second;
  size_t& set = opted[k];
  if (smem > set) {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    set = smem;
  }
  int per_sm = 0;
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem));
  known[{k, threads, smem}] = per_sm;
  return per_sm;
}

template <class Kernel>
dim3 persistent_grid(Kernel kernel, int threads, size_t smem, long long tiles, long long slices) {
  const int per_sm = resident_ctas(kernel, threads, smem);
  const long long fit = std::max(per_sm, 1) * static_cast<long long>(cuda::sm_count());
  const long long per_slice = std::max(1LL, std::min(tiles, (fit + slices - 1) / slices));
  return dim3(static_cast<unsigned>(per_slice), static_cast<unsigned>(slices));
}

}  // namespace mdq::kernels

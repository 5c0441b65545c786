// The grid-stride loop of the elementwise-style kernels: i runs over [0, n) across the whole grid,
// so a launch of cuda::grid_for(n) blocks (or fewer) covers any n.
#pragma once
#include <cstdint>

#define MDQ_GRID_STRIDE(i, n)                                                                  \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

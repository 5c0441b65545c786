// bf16 bits (uint16_t) on the device: widened to f32 (exact) and f32 rounded to bf16 (to nearest
// even), the device side of common/bf16.h, which the CPU references use.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

namespace mdq::kernels {

__device__ __forceinline__ float bf_to_f(uint16_t u) { return __bfloat162float(__ushort_as_bfloat16(u)); }
__device__ __forceinline__ uint16_t f_to_bf(float v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }

}  // namespace mdq::kernels

// bf16 bits (uint16_t) on the device: widened to f32 (exact) and f32 rounded to bf16 (to nearest
// even), the device side of common/bf16.h, which the CPU references use; one value at a time, or
// V at a time (V = 8: one 16-byte access; V = 1: one value) for the vectorised NHWC kernels.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace mdq::kernels {

__device__ __forceinline__ float bf_to_f(uint16_t u) { return __bfloat162float(__ushort_as_bfloat16(u)); }
__device__ __forceinline__ uint16_t f_to_bf(float v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }

// V bf16 as loaded, kept packed (half the registers of the widened values) while loads are in
// flight, and widened when used. p must be 16-byte aligned for V = 8.
template <int V>
using Bf16Raw = std::conditional_t<V == 8, uint4, uint16_t>;
template <int V>
__device__ __forceinline__ Bf16Raw<V> load_raw(const uint16_t* p) {
  return *reinterpret_cast<const Bf16Raw<V>*>(p);
}
__device__ __forceinline__ float bf_lo(uint32_t w) { return __uint_as_float(w << 16); }  // the lower address
__device__ __forceinline__ float bf_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }
template <int V>
__device__ __forceinline__ void widen(const Bf16Raw<V>& q, float (&f)[V]) {
  if constexpr (V == 8) {
    f[0] = bf_lo(q.x), f[1] = bf_hi(q.x), f[2] = bf_lo(q.y), f[3] = bf_hi(q.y);
    f[4] = bf_lo(q.z), f[5] = bf_hi(q.z), f[6] = bf_lo(q.w), f[7] = bf_hi(q.w);
  } else {
    f[0] = bf_to_f(q);
  }
}
template <int V>
__device__ __forceinline__ void load_bf16(const uint16_t* p, float (&f)[V]) {
  widen<V>(load_raw<V>(p), f);
}
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo, round to nearest even
  uint32_t u;
  memcpy(&u, &h, sizeof(u));
  return u;
}
template <int V>
__device__ __forceinline__ void store_bf16(uint16_t* p, const float (&f)[V]) {
  if constexpr (V == 8) {
    *reinterpret_cast<uint4*>(p) =
        make_uint4(pack2(f[0], f[1]), pack2(f[2], f[3]), pack2(f[4], f[5]), pack2(f[6], f[7]));
  } else {
    *p = f_to_bf(f[0]);
  }
}

}  // namespace mdq::kernels

// bf16 on the host: f32 -> bf16 rounded to nearest even (as __float2bfloat16_rn; a NaN stays a
// quiet NaN) and bf16 -> f32 (exact). The engine's CPU references and the kernels' host-side
// references both round with these, so a GPU result can be compared with them bit for bit.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace mdq {

inline uint16_t float_to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if (std::isnan(x)) return static_cast<uint16_t>((u >> 16) | 0x40u);  // keep it a (quiet) NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                        // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}

inline float bf16_to_float(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

}  // namespace mdq

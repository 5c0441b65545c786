// What the two W1A16 / W2A16 convolution paths share (kernels/w1a16_conv.cu: the fast path and
// the entry point; kernels/w1a16_general.cu: any channel count): the problem geometry, the bf16
// patterns of ±1, and each path's launcher.
#pragma once
#include <cstdint>

#include "kernels/conv_shape.h"
#include "kernels/w1a16_conv.h"

namespace mdq::kernels::w1a16 {

// bf16 bit patterns of +1, -1.
constexpr uint32_t kPlus = 0x3F80u, kMinus = 0xBF80u;

struct Geometry : ConvShape {  // Ktot = T*Cw words per output channel
  int CB;                       // fast path: 64-channel blocks per tap
  long long M;
};

// Any C (e.g. 3 or 130): k-tile = one packed word, weights expanded in shared memory.
template <bool TERNARY>
void launch_general_path(const W1A16ConvArgs& a, const Geometry& g);

}  // namespace mdq::kernels::w1a16

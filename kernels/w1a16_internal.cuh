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

// sm_90a, C % 8 == 0 (kernels/w1a16_wgmma.cu), opt-in: false unless MDQ_W1A16_KERNEL=wgmma is
// set, the build has sm_90a code and the device is compute capability 9.0.
bool launch_wgmma_path(const W1A16ConvArgs& a, const Geometry& g);

// Any C (e.g. 3 or 130): k-tile = one packed word, weights expanded in shared memory.
template <bool TERNARY>
void launch_general_path(const W1A16ConvArgs& a, const Geometry& g);

}  // namespace mdq::kernels::w1a16

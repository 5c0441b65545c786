// Launcher for convolutions with packed binary (W1A16) or ternary (W2A16) weights and bf16
// activations (kernels/w1a16_conv.cu). Device pointers; work on mdq::cuda::stream().
// CPU reference: engine/packed/packed_conv.cpp.
#pragma once
#include <cstdint>

namespace mdq::kernels {

struct W1A16ConvArgs {
  const uint16_t* x = nullptr;          // bf16 NHWC activations [N][H][W][C]
  const uint32_t* sign = nullptr;       // packed weights [O][KH][KW][Cw], bit 1 = +1
  const uint32_t* nonzero = nullptr;    // ternary only: bit 1 = weight is not 0; null = binary
  int N = 0, H = 0, W = 0, C = 0, O = 0, KH = 1, KW = 1, stride = 1, pad = 0;
  const float* scale = nullptr;         // [O] or null (1)
  const float* shift = nullptr;         // [O] or null (0)
  bool relu = false;
  bool out_bf16 = false;                // out is bf16 (else f32) NHWC [N][OH][OW][O]
  void* out = nullptr;
};

void w1a16_conv2d(const W1A16ConvArgs& a);

}  // namespace mdq::kernels

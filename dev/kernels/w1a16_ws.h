// The workshop's warp-specialised W1A16 / W2A16 convolution on Hopper's wgmma
// (dev/kernels/w1a16_ws.cu: its design and why it is not the default). Same arguments and
// results as the main path's kernels::w1a16_conv2d / packed::w1a16_conv2d, whose CPU reference it
// is tested against (dev/tests/test_w1a16_ws_gpu.cpp). Built into mdq_dev, in CUDA builds only.
#pragma once
#include "engine/packed/packed_conv.h"
#include "engine/tensor.h"
#include "kernels/w1a16_conv.h"

namespace mdq::dev {

// Launcher: device pointers, queued on mdq::cuda::stream(). Returns false, launching nothing,
// where the kernel does not apply: a build without sm_90a code, a GPU other than compute
// capability 9.0, a.C % 8 != 0 (its 16-byte activation loads), more than 32 taps, or sizes past
// its 32-bit indices. tile_channels: the CTA's output channels, 64, 128 or 256; 0 picks by O (64
// for O <= 64, 128 for O <= 128, else 256).
bool w1a16_ws_conv2d(const kernels::W1A16ConvArgs& a, int tile_channels = 0);

// On tensors, as packed::w1a16_conv2d (x bf16 NHWC and w on the GPU): the output, or an
// undefined tensor where the launcher declines.
Tensor w1a16_ws_conv2d(const Tensor& x, const packed::PackedWeights& w, packed::ConvGeometry g = {},
                       const packed::FloatOutput& out = {}, int tile_channels = 0);

}  // namespace mdq::dev

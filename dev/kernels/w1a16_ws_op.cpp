// dev::w1a16_ws_conv2d on tensors: packed::w1a16_conv2d's argument checks and kernel arguments
// (packed::w1a16_conv2d_launch), then the launcher.
#include "dev/kernels/w1a16_ws.h"

namespace mdq::dev {

Tensor w1a16_ws_conv2d(const Tensor& x, const packed::PackedWeights& w, packed::ConvGeometry g,
                       const packed::FloatOutput& out, int tile_channels) {
  MDQ_CHECK(tile_channels == 0 || tile_channels == 64 || tile_channels == 128 || tile_channels == 256,
            "dev::w1a16_ws_conv2d: tile_channels " << tile_channels << " must be 0 (by O), 64, 128 or 256");
  packed::W1A16Launch l = packed::w1a16_conv2d_launch("dev::w1a16_ws_conv2d", x, w, g, out);
  return w1a16_ws_conv2d(l.args, tile_channels) ? l.y : Tensor();
}

}  // namespace mdq::dev

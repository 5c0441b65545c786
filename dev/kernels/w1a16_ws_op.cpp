// dev::w1a16_ws_conv2d on tensors: packed::w1a16_conv2d's argument checks, then the launcher.
#include "dev/kernels/w1a16_ws.h"

#include "common/window.h"

namespace mdq::dev {

Tensor w1a16_ws_conv2d(const Tensor& x, const packed::PackedWeights& w, packed::ConvGeometry g,
                       const packed::FloatOutput& out, int tile_channels) {
  const int64_t O = w.out_channels();
  MDQ_CHECK(x.is_cuda() && x.dtype() == DType::BF16 && x.ndim() == 4 && x.dim(3) == w.channels && w.sign.is_cuda(),
            "dev::w1a16_ws_conv2d: needs bf16 NHWC activations and weights of the same channel count on the GPU; "
            "got x " << x.describe() << ", weights " << w.sign.describe() << " for " << w.channels << " channels");
  MDQ_CHECK(out.dtype == DType::F32 || out.dtype == DType::BF16, "dev::w1a16_ws_conv2d: output must be f32 or bf16");
  for (const Tensor* v : {&out.scale, &out.shift})
    MDQ_CHECK(!v->defined() || (v->numel() == O && v->dtype() == DType::F32 && v->is_cuda()),
              "dev::w1a16_ws_conv2d: scale and shift need one f32 value per output channel (" << O
                                                                                          << ") on the GPU, got "
                                                                                          << v->describe());
  MDQ_CHECK(g.stride > 0 && g.padding >= 0, "dev::w1a16_ws_conv2d: stride " << g.stride << " and padding "
                                                                                << g.padding << " must be > 0 and >= 0");
  const int64_t OH = ops::window_output_size(x.dim(1), w.kernel_h(), g.stride, g.padding);
  const int64_t OW = ops::window_output_size(x.dim(2), w.kernel_w(), g.stride, g.padding);
  MDQ_CHECK(OH > 0 && OW > 0,
            "dev::w1a16_ws_conv2d: input " << x.describe() << " with stride " << g.stride << " and padding "
                                              << g.padding << " gives no output");
  Tensor y = Tensor::empty({x.dim(0), OH, OW, O}, out.dtype, Device::CUDA);
  kernels::W1A16ConvArgs a;
  a.x = x.data<uint16_t>();
  a.sign = w.sign.data<uint32_t>();
  a.nonzero = w.ternary() ? w.nonzero.data<uint32_t>() : nullptr;
  a.N = static_cast<int>(x.dim(0)), a.H = static_cast<int>(x.dim(1)), a.W = static_cast<int>(x.dim(2));
  a.C = static_cast<int>(w.channels), a.O = static_cast<int>(O);
  a.KH = static_cast<int>(w.kernel_h()), a.KW = static_cast<int>(w.kernel_w());
  a.stride = static_cast<int>(g.stride), a.pad = static_cast<int>(g.padding);
  a.scale = out.scale.defined() ? out.scale.data<float>() : nullptr;
  a.shift = out.shift.defined() ? out.shift.data<float>() : nullptr;
  a.relu = out.relu;
  a.out_bf16 = out.dtype == DType::BF16;
  a.out = y.raw();
  MDQ_CHECK(tile_channels == 0 || tile_channels == 64 || tile_channels == 128 || tile_channels == 256,
            "dev::w1a16_ws_conv2d: tile_channels " << tile_channels << " must be 0 (by O), 64, 128 or 256");
  return w1a16_ws_conv2d(a, tile_channels) ? y : Tensor();
}

}  // namespace mdq::dev

// Packed weights (binary as sign bits, ternary as two planes, E11's rounding already applied),
// the plain-loop NHWC float convolution every packed op is checked against, and the W1A16 /
// W2A16 convolutions: CPU reference and the CUDA path through the registry
// (kernels/w1a16_conv.cu). The W1A1 ones are in binary_conv.cpp.
#include "engine/packed/packed_conv.h"

#include <algorithm>

#include "engine/backend/registry.h"
#include "engine/packed/bitpack.h"
#include "engine/packed/conv_common.h"
#include "engine/packed/nhwc.h"

namespace mdq::packed {
namespace {

Tensor tap_popcounts(const Tensor& sign_cpu) {
  const int64_t O = sign_cpu.dim(0), T = sign_cpu.dim(1) * sign_cpu.dim(2), Cw = sign_cpu.dim(3);
  Tensor t = Tensor::empty({O, T + 1}, DType::I32);
  const uint32_t* s = sign_cpu.data<uint32_t>();
  int32_t* p = t.data<int32_t>();
  for (int64_t o = 0; o < O; ++o) {
    int total = 0;
    for (int64_t k = 0; k < T; ++k) {
      int c = 0;
      for (int64_t w = 0; w < Cw; ++w) c += detail::popc(s[(o * T + k) * Cw + w]);
      p[o * (T + 1) + k] = c;
      total += c;
    }
    p[o * (T + 1) + T] = total;
  }
  return t;
}

Tensor as_4d_weights(const char* op, const Tensor& w) {
  check_dtype(op, w, DType::F32);
  MDQ_CHECK(w.ndim() == 4 || w.ndim() == 2, op << ": expects weights [O][C][KH][KW] or [O][C], got " << w.describe());
  return w.ndim() == 4 ? w : w.reshape({w.dim(0), w.dim(1), 1, 1});
}

}  // namespace

PackedWeights PackedWeights::to(Device device) const {
  PackedWeights r = *this;
  r.sign = sign.to(device);
  if (nonzero.defined()) r.nonzero = nonzero.to(device);
  if (tap_popc.defined()) r.tap_popc = tap_popc.to(device);
  return r;
}

PackedWeights pack_binary_weights(const Tensor& w) {
  Tensor w4 = as_4d_weights("pack_binary_weights", w);
  PackedWeights p;
  p.sign = pack_signs_nchw(w4);
  p.channels = w4.dim(1);
  p.tap_popc = tap_popcounts(p.sign.cpu()).to(w.device());
  return p;
}

PackedWeights pack_ternary_weights(const Tensor& w) {
  Tensor w4 = as_4d_weights("pack_ternary_weights", w);
  TernaryPlanes t = pack_ternary(to_nhwc(w4, DType::F32));  // [O][KH][KW][C] values -> planes
  PackedWeights p;
  p.sign = t.sign;
  p.nonzero = t.nonzero;
  p.channels = w4.dim(1);
  return p;
}

Tensor unpack_weights(const PackedWeights& w) {
  if (w.ternary()) return unpack_ternary({w.sign, w.nonzero}, w.channels).cpu();
  return unpack_signs(w.sign.cpu(), w.channels);
}

Tensor conv2d_nhwc_reference(const Tensor& x, const Tensor& w, ConvGeometry g) {
  check_dtype("conv2d_nhwc_reference", x, DType::F32);
  check_dtype("conv2d_nhwc_reference", w, DType::F32);
  check_ndim("conv2d_nhwc_reference", x, 4);
  check_ndim("conv2d_nhwc_reference", w, 4);
  MDQ_CHECK(!x.is_cuda() && !w.is_cuda(), "conv2d_nhwc_reference: CPU tensors only, got " << x.describe() << ", " << w.describe());
  MDQ_CHECK(x.dim(3) == w.dim(3), "conv2d_nhwc_reference: channels of " << x.describe() << " and " << w.describe() << " differ");
  const int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2), C = x.dim(3);
  const int64_t O = w.dim(0), KH = w.dim(1), KW = w.dim(2);
  const int64_t OH = detail::out_size(H, KH, g), OW = detail::out_size(W, KW, g);
  Tensor y = Tensor::empty({N, OH, OW, O});
  const float* xp = x.data<float>();
  const float* wp = w.data<float>();
  float* yp = y.data<float>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow)
        for (int64_t o = 0; o < O; ++o) {
          double acc = 0;
          for (int64_t kh = 0; kh < KH; ++kh)
            for (int64_t kw = 0; kw < KW; ++kw) {
              const int64_t ih = oh * g.stride - g.padding + kh, iw = ow * g.stride - g.padding + kw;
              if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
              const float* a = xp + ((n * H + ih) * W + iw) * C;
              const float* b = wp + ((o * KH + kh) * KW + kw) * C;
              for (int64_t c = 0; c < C; ++c) acc += static_cast<double>(a[c]) * b[c];
            }
          yp[((n * OH + oh) * OW + ow) * O + o] = static_cast<float>(acc);
        }
  return y;
}

namespace {

// w1a16_conv2d's argument checks; its output's shape [N][OH][OW][O].
Shape check_w1a16_conv2d(const char* op, const Tensor& x, const PackedWeights& w, ConvGeometry g,
                         const FloatOutput& out) {
  check_dtype(op, x, DType::BF16);
  check_ndim(op, x, 4);
  detail::check_geometry(op, x, w, g);
  MDQ_CHECK(x.dim(3) == w.channels, op << ": input " << x.describe() << " has " << x.dim(3) << " channels, weights "
                                       << w.sign.describe() << " expect " << w.channels);
  MDQ_CHECK(out.dtype == DType::F32 || out.dtype == DType::BF16, op << ": output must be f32 or bf16");
  const int64_t O = w.out_channels();
  detail::check_vector(op, out.scale, O, x);
  detail::check_vector(op, out.shift, O, x);
  if (w.ternary()) check_same_device(op, x, w.nonzero);
  return {x.dim(0), detail::out_size(x.dim(1), w.kernel_h(), g), detail::out_size(x.dim(2), w.kernel_w(), g), O};
}

// The output on the GPU and the kernel arguments that write it, for checked arguments.
W1A16Launch gpu_launch(const Tensor& x, const PackedWeights& w, ConvGeometry g, const FloatOutput& out,
                       const Shape& shape) {
  W1A16Launch l{Tensor::empty(shape, out.dtype, Device::CUDA), {}};
  kernels::W1A16ConvArgs& a = l.args;
  a.x = x.data<uint16_t>();
  a.sign = w.sign.data<uint32_t>();
  a.nonzero = w.ternary() ? w.nonzero.data<uint32_t>() : nullptr;
  a.N = static_cast<int>(x.dim(0)); a.H = static_cast<int>(x.dim(1)); a.W = static_cast<int>(x.dim(2));
  a.C = static_cast<int>(w.channels); a.O = static_cast<int>(w.out_channels());
  a.KH = static_cast<int>(w.kernel_h()); a.KW = static_cast<int>(w.kernel_w());
  a.stride = static_cast<int>(g.stride); a.pad = static_cast<int>(g.padding);
  a.scale = out.scale.defined() ? out.scale.data<float>() : nullptr;
  a.shift = out.shift.defined() ? out.shift.data<float>() : nullptr;
  a.relu = out.relu;
  a.out_bf16 = out.dtype == DType::BF16;
  a.out = l.y.raw();
  return l;
}

}  // namespace

W1A16Launch w1a16_conv2d_launch(const char* op, const Tensor& x, const PackedWeights& w, ConvGeometry g,
                                const FloatOutput& out) {
  MDQ_CHECK(x.is_cuda(), op << ": needs its input on the GPU, got " << x.describe());
  return gpu_launch(x, w, g, out, check_w1a16_conv2d(op, x, w, g, out));
}

Tensor w1a16_conv2d(const Tensor& x, const PackedWeights& w, ConvGeometry g, const FloatOutput& out) {
  const char* op = "w1a16_conv2d";
  const Shape shape = check_w1a16_conv2d(op, x, w, g, out);
  if (x.is_cuda()) {
    W1A16Launch l = gpu_launch(x, w, g, out, shape);
    backend::cuda_impl(op, &backend::CudaBackend::w1a16_conv2d)(l.args);
    return l.y;
  }
  const int64_t O = shape[3];
  // CPU: bf16 inputs widened exactly to f32, unpacked weights, double accumulation.
  Tensor y = conv2d_nhwc_reference(to_f32(x), unpack_weights(w), g);
  float* yp = y.data<float>();
  const float* sc = out.scale.defined() ? out.scale.data<float>() : nullptr;
  const float* sh = out.shift.defined() ? out.shift.data<float>() : nullptr;
  for (int64_t i = 0; i < y.numel(); ++i) {
    const int64_t o = i % O;
    float v = yp[i] * (sc ? sc[o] : 1.f) + (sh ? sh[o] : 0.f);
    yp[i] = out.relu ? std::max(v, 0.f) : v;
  }
  return out.dtype == DType::BF16 ? to_bf16(y) : y;
}

Tensor w1a16_linear(const Tensor& x, const PackedWeights& w, const FloatOutput& out) {
  check_dtype("w1a16_linear", x, DType::BF16);
  check_ndim("w1a16_linear", x, 2);
  Tensor y = w1a16_conv2d(x.reshape({x.dim(0), 1, 1, x.dim(1)}), w, {}, out);
  return y.reshape({x.dim(0), y.dim(3)});
}

}  // namespace mdq::packed

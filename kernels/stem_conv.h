// The stem of packed inference as one pass (engine/packed/stem_conv.h, issue #16): the model's
// first convolution read straight from the f32 NCHW images, its folded BatchNorm (and bias) and
// ReLU applied to the f32 sums, written NHWC as bf16 or f32:
//
//   y[n][oh][ow][o] = act(fma(d, scale[o], shift[o])),
//   d = sum over kh, kw, c (in that order, each term one fma into the sum started at +0) of
//       x[n][c][oh*stride - pad + kh][ow*stride - pad + kw] * w[o][c][kh][kw],
//
// with out-of-image taps read as 0 (their fma still runs, so the CPU and GPU sums take the same
// steps, signed zeros included), act = max(0, .) when relu. It replaces three passes (images to
// NHWC bf16 padded to 8 channels, cuDNN's bf16 convolution, the affine pass) whose conv has too
// little depth per tap (3 channels) to feed tensor cores well: the direct kernel spends f32 FMAs
// on CUDA cores instead and never writes the images or the raw sums back to memory.
// Shapes handled (stem_conv_fits): C <= 4 input channels, O in {16, 32, 64} filters, windows up
// to 7 x 7, stride 1 or 2, any padding.
// A third output form, for a sign activation after the stem (W1A1 plans): the signs of y packed
// as the next layer's bits, u32 [N][OH][OW][O/32], bit o % 32 of word o / 32 set iff y >= 0 --
// engine/packed/bitpack.h's layout and its test (so -0 and the ReLU's 0 give 1, a NaN 0), taken
// of the f32 value, never a rounded one. It replaces writing y (f32: 256 bytes a pixel for 64
// filters) and reading it back to pack it (8 bytes a pixel); O a multiple of 32 (stem_signs_fit).
// Launchers take device pointers and queue on mdq::cuda::stream(); the CPU reference below takes
// the same arguments on host pointers and runs the same arithmetic in the same order, so the GPU
// matches it bit for bit.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/bf16.h"
#include "common/window.h"
#include "kernels/host_device.h"

namespace mdq::kernels {

struct StemConvArgs {
  const float* x = nullptr;      // f32 NCHW images [N][C][H][W]
  const float* w = nullptr;      // f32 [O][C][KH][KW], the layer's own layout
  const float* scale = nullptr;  // [O] or null (1)
  const float* shift = nullptr;  // [O] or null (0)
  int N = 0, C = 0, H = 0, W = 0, O = 0, KH = 1, KW = 1, stride = 1, pad = 0;
  bool relu = false;
};

// The largest window and input depth the kernel keeps in shared memory, and its filter counts.
constexpr int kStemMaxWindow = 7, kStemMaxChannels = 4;

template <class I>  // int here, int64_t in the engine's checks
constexpr bool stem_conv_fits(I C, I O, I KH, I KW, I stride, I pad) {
  return C >= 1 && C <= kStemMaxChannels && (O == 16 || O == 32 || O == 64) && KH >= 1 && KH <= kStemMaxWindow &&
         KW >= 1 && KW <= kStemMaxWindow && (stride == 1 || stride == 2) && pad >= 0;
}

// The signs form takes the shapes above with whole words of filters: O in {32, 64}.
template <class I>
constexpr bool stem_signs_fit(I C, I O, I KH, I KW, I stride, I pad) {
  return stem_conv_fits(C, O, KH, KW, stride, pad) && O % 32 == 0;
}

// y f32 or bf16 NHWC [N][OH][OW][O], OH = ops::window_output_size(H, KH, stride, pad), OW alike.
// The shape must fit (stem_conv_fits); y 16-byte aligned.
void stem_conv_nhwc_bf16(const StemConvArgs& a, uint16_t* y);
void stem_conv_nhwc_f32(const StemConvArgs& a, float* y);
// bits u32 [N][OH][OW][O/32], the signs form; the shape must fit (stem_signs_fit), bits 8-byte
// aligned.
void stem_conv_signs(const StemConvArgs& a, uint32_t* bits);

// The epilogue both sides run on a finished sum: the folded affine as one fma, then the ReLU as
// a compare (a NaN becomes 0, as fmaxf makes it in kernels/nhwc_bf16.cu's affine pass, and -0
// becomes +0 on both sides alike, where fmaxf may pick either zero).
MDQ_HD float stem_affine_act(float d, float scale, float shift, bool relu) {
  const float v = fmaf(d, scale, shift);
  return relu && !(v > 0.f) ? 0.f : v;
}
// The signs form's bit: Binarize's test (engine/packed/bitpack.h: x >= 0) on the epilogue's value.
MDQ_HD bool stem_sign(float d, float scale, float shift, bool relu) {
  return stem_affine_act(d, scale, shift, relu) >= 0.f;
}

// stem_sign as one comparison, for the tensor-core kernel's epilogue: for finite d,
// stem_sign(d, scale, shift, relu) == ((d >= t) != flip), t = stem_sign_threshold(scale, shift,
// relu, flip). fma(d, scale, shift) is monotone in d (rounding is monotone), so the d where it is
// >= 0 are {d >= t} for scale > 0 and the complement of such a set for scale < 0; t is found by
// bisection over the floats in order (bit patterns with the sign folded), so it is the exact
// boundary of this fma, not an estimate of -shift / scale. scale = 0 or ReLU: a constant bit.
MDQ_HD float stem_sign_threshold(float scale, float shift, bool relu, bool& flip) {
  flip = false;
  if (relu) return -INFINITY;  // the ReLU's value is >= 0: always set
  if (scale == 0.f) {          // fma(d, 0, shift) = shift for finite d
    flip = !(shift >= 0.f);
    return -INFINITY;
  }
  flip = scale < 0.f;
  auto key = [](float x) {  // the floats' order as integers
    int32_t i;
    memcpy(&i, &x, 4);
    return int64_t(i >= 0 ? i : i ^ 0x7fffffff);
  };
  auto value = [](int64_t k) {
    const int32_t i = k >= 0 ? int32_t(k) : int32_t(k) ^ 0x7fffffff;
    float x;
    memcpy(&x, &i, 4);
    return x;
  };
  int64_t lo = key(-INFINITY), hi = key(INFINITY);  // set at hi (+inf), not at lo (-inf)
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    const bool set = (fmaf(value(mid), scale, shift) >= 0.f) != flip;
    (set ? hi : lo) = mid;
  }
  return value(hi);
}

// ---- CPU reference (host pointers): the formula above, one output at a time.
namespace reference {

// d of output pixel (n, oh, ow) and filter o, the fmas in the formula's order.
inline float stem_sum(const StemConvArgs& a, int n, int oh, int ow, int o) {
  const int64_t plane = int64_t(a.H) * a.W;
  float d = 0.f;
  for (int kh = 0; kh < a.KH; ++kh)
    for (int kw = 0; kw < a.KW; ++kw) {
      const int ih = oh * a.stride - a.pad + kh, iw = ow * a.stride - a.pad + kw;
      const bool inside = ih >= 0 && ih < a.H && iw >= 0 && iw < a.W;
      for (int c = 0; c < a.C; ++c) {
        const float v = inside ? a.x[(int64_t(n) * a.C + c) * plane + int64_t(ih) * a.W + iw] : 0.f;
        d = std::fma(v, a.w[((int64_t(o) * a.C + c) * a.KH + kh) * a.KW + kw], d);
      }
    }
  return d;
}

template <class T>
void stem_conv_nhwc(const StemConvArgs& a, T* y) {
  const int OH = ops::window_output_size(a.H, a.KH, a.stride, a.pad);
  const int OW = ops::window_output_size(a.W, a.KW, a.stride, a.pad);
  for (int n = 0; n < a.N; ++n)
    for (int oh = 0; oh < OH; ++oh)
      for (int ow = 0; ow < OW; ++ow)
        for (int o = 0; o < a.O; ++o) {
          const float d = stem_sum(a, n, oh, ow, o);
          const float v = stem_affine_act(d, a.scale ? a.scale[o] : 1.f, a.shift ? a.shift[o] : 0.f, a.relu);
          T& out = y[((int64_t(n) * OH + oh) * OW + ow) * a.O + o];
          if constexpr (sizeof(T) == 2) out = float_to_bf16(v);
          else out = v;
        }
}

// The signs form: the same sums, each output's bit set by stem_sign.
inline void stem_conv_signs(const StemConvArgs& a, uint32_t* bits) {
  const int OH = ops::window_output_size(a.H, a.KH, a.stride, a.pad);
  const int OW = ops::window_output_size(a.W, a.KW, a.stride, a.pad);
  const int Cw = a.O / 32;
  for (int n = 0; n < a.N; ++n)
    for (int oh = 0; oh < OH; ++oh)
      for (int ow = 0; ow < OW; ++ow) {
        uint32_t* word = bits + ((int64_t(n) * OH + oh) * OW + ow) * Cw;
        for (int w = 0; w < Cw; ++w) word[w] = 0u;
        for (int o = 0; o < a.O; ++o)
          if (stem_sign(stem_sum(a, n, oh, ow, o), a.scale ? a.scale[o] : 1.f, a.shift ? a.shift[o] : 0.f, a.relu))
            word[o / 32] |= 1u << (o % 32);
      }
}

}  // namespace reference
}  // namespace mdq::kernels

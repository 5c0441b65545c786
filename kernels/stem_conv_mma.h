// The stem convolution on tensor cores (kernels/stem_conv_mma.cu, issue #16): the direct stem's
// arguments and outputs (kernels/stem_conv.h: StemConvArgs, the shapes of stem_conv_fits /
// stem_signs_fit, NHWC bf16 / f32 or the packed signs), computed as an implicit GEMM on mma.sync
// m16n8k16 bf16 with f32 accumulation:
//
//   y[n][oh][ow][o] = act(fma(d, scale[o], shift[o]))          (kernels::stem_affine_act)
//   d = sum over c, kh, kw of bf16(x[n][c][ih][iw]) * bf16(w[o][c][kh][kw])            (Bf16)
//   d = sum over c, kh, kw of hi(x) hi(w) + hi(x) lo(w) + lo(x) hi(w)                  (SplitBf16)
//   ih = oh*stride - pad + kh, iw = ow*stride - pad + kw, out-of-image taps 0,
//
// with bf16() round-to-nearest-even, hi(v) = bf16(v), lo(v) = bf16(v - hi(v)). Where every weight
// is a bf16 value (lo(w) = 0: quantized levels such as -1, 0, 1), SplitBf16's hi(x) lo(w) terms are
// 0 and the kernel leaves their MMAs out: d = sum of (hi(x) + lo(x)) w, two MMAs. Bf16 rounds each
// image value and weight to 8 significant bits (up to 2^-8 relative); SplitBf16 carries 16 of them in two
// bf16 parts and takes three MMAs where Bf16 takes one, leaving out lo(x) lo(w) and the parts'
// own roundings: each product within 3.02 * 2^-16 of x w (Bf16: 2^-7), so the sums nearly
// match the direct kernel's f32 ones and a sign flips only at a much nearer tie. In either form
// the products are exact in f32 (8-bit significands) and the sums are f32 in the tensor cores'
// order (16 taps per MMA, the MMAs of a k-step one after another), not the direct kernel's fma
// chain, so the results are NOT bit-identical to kernels::stem_conv_nhwc_*. The CPU reference
// below is the equation's exact value (double sums of the MMAs' products), which the GPU test
// compares against with a tolerance (tests/gpu/test_stem_conv_mma_gpu.cpp).
// Measured on an H200, ImageNet ResNet-18's stem (224x224x3 -> 112x112x64, 7x7 stride 2) at
// batch 256 (bench_packed_resnet18), Bf16: the signs form 0.630 ms and the bf16 NHWC form 0.751
// ms, against the direct f32 kernel's 1.704 ms; 86735 of its 205520896 sign bits differed from
// the direct kernel's (0.04%), enough to change the top-1 class of a W1A1 network on up to a
// quarter of the images (scripts/check-packed-infer.sh). SplitBf16: 0.863 ms for the signs, 122
// of those bits differing from the direct kernel's (docs/DESIGN.md §2 has the agreement figures).
#pragma once
#include <cmath>
#include <cstdint>

#include "common/bf16.h"
#include "common/window.h"
#include "kernels/stem_conv.h"

namespace mdq::kernels {

// Whether the current device runs the kernel: bf16 mma.sync needs compute capability 8.0.
bool stem_conv_mma_supported();

// The operands of the MMAs: the equation's two forms above.
enum class StemMmaOperands { Bf16, SplitBf16 };

// Launchers: device pointers, queued on mdq::cuda::stream(), outputs as stem_conv.h's (y 16-byte
// aligned, bits 8-byte aligned). The shape must fit (stem_conv_fits; stem_signs_fit for the
// signs), else an error. Return false, launching nothing, where !stem_conv_mma_supported(): the
// caller then runs the direct kernel (engine/packed/stem_conv.cpp does).
bool stem_conv_mma_nhwc_bf16(const StemConvArgs& a, uint16_t* y, StemMmaOperands operands);
bool stem_conv_mma_nhwc_f32(const StemConvArgs& a, float* y, StemMmaOperands operands);
bool stem_conv_mma_signs(const StemConvArgs& a, uint32_t* bits, StemMmaOperands operands);

// ---- CPU reference (host pointers): the equation above with the sum in double. Not what the
// engine's CPU path runs (that is the direct kernel's reference, stem_conv.h): the tests' yardstick.
namespace reference::mma {

inline double bf16_round(float v) { return bf16_to_float(float_to_bf16(v)); }

// x w as the MMAs take it: bf16(x) bf16(w), or with SplitBf16 hi(x) hi(w) + hi(x) lo(w) + lo(x) hi(w)
// (x - hi(x) is exact in f32, as on the GPU); *abs_terms gets the sum of the terms' magnitudes.
inline double stem_product(float x, float w, StemMmaOperands operands, double* abs_terms) {
  const double xh = bf16_round(x), wh = bf16_round(w);
  if (operands == StemMmaOperands::Bf16) {
    *abs_terms = std::fabs(xh * wh);
    return xh * wh;
  }
  const double xl = bf16_round(x - float(xh)), wl = bf16_round(w - float(wh));
  *abs_terms = std::fabs(xh * wh) + std::fabs(xh * wl) + std::fabs(xl * wh);
  return xh * wh + xh * wl + xl * wh;
}

// d of output pixel (n, oh, ow) and filter o from the operands' products, summed in double;
// *abs_sum (if given) gets the sum of every term's magnitude, what an f32 sum's rounding errors
// scale with.
inline double stem_sum(const StemConvArgs& a, int n, int oh, int ow, int o, double* abs_sum = nullptr,
                       StemMmaOperands operands = StemMmaOperands::Bf16) {
  const int64_t plane = int64_t(a.H) * a.W;
  double d = 0, s = 0;
  for (int c = 0; c < a.C; ++c)
    for (int kh = 0; kh < a.KH; ++kh)
      for (int kw = 0; kw < a.KW; ++kw) {
        const int ih = oh * a.stride - a.pad + kh, iw = ow * a.stride - a.pad + kw;
        if (ih < 0 || ih >= a.H || iw < 0 || iw >= a.W) continue;
        double terms = 0;
        d += stem_product(a.x[(int64_t(n) * a.C + c) * plane + int64_t(ih) * a.W + iw],
                          a.w[((int64_t(o) * a.C + c) * a.KH + kh) * a.KW + kw], operands, &terms);
        s += terms;
      }
  if (abs_sum) *abs_sum = s;
  return d;
}

// The epilogue's value before the activation, scale d + shift, in double (the GPU rounds it
// once, in stem_affine_act's fma).
inline double stem_pre(const StemConvArgs& a, double d, int o) {
  return (a.scale ? double(a.scale[o]) : 1.0) * d + (a.shift ? double(a.shift[o]) : 0.0);
}

}  // namespace reference::mma
}  // namespace mdq::kernels

// The stem convolution on tensor cores (kernels/stem_conv_mma.cu, issue #16): the direct stem's
// arguments and outputs (kernels/stem_conv.h: StemConvArgs, the shapes of stem_conv_fits /
// stem_signs_fit, NHWC bf16 / f32 or the packed signs), computed as an implicit GEMM on mma.sync
// m16n8k16 bf16 with f32 accumulation:
//
//   y[n][oh][ow][o] = act(fma(d, scale[o], shift[o]))          (kernels::stem_affine_act)
//   d = sum over c, kh, kw of bf16(x[n][c][ih][iw]) * bf16(w[o][c][kh][kw]),
//   ih = oh*stride - pad + kh, iw = ow*stride - pad + kw, out-of-image taps 0,
//
// with bf16() round-to-nearest-even. The products are exact in f32 (8-bit significands); the
// sums are f32 in the tensor cores' order (16 taps per MMA, the MMAs of a k-step one after
// another), not the direct kernel's fma chain, so the results are NOT bit-identical to
// kernels::stem_conv_nhwc_*: they differ by the bf16 rounding of the images and weights (up to
// 2^-8 relative per product) and by the summation order. The CPU reference below is the
// equation's exact value (double sums of the bf16-rounded products), which the GPU test
// compares against with a tolerance (tests/gpu/test_stem_conv_mma_gpu.cpp).
// Measured on an H200, ImageNet ResNet-18's stem (224x224x3 -> 112x112x64, 7x7 stride 2) at
// batch 256 (bench_packed_resnet18): the signs form 0.631 ms and the bf16 NHWC form 0.751 ms,
// against the direct f32 kernel's 1.704 ms (2.7x and 2.3x faster); 86735 of its 205520896 sign
// bits differed from the direct kernel's (0.04%, near-zero values under the bf16 rounding). So
// packed inference's stem takes it by default (engine/packed/stem_conv.h: StemArithmetic,
// infer::StemPath::TensorCores); the direct kernel stays for exact f32 sums and GPUs below 8.0.
#pragma once
#include <cmath>
#include <cstdint>

#include "common/bf16.h"
#include "common/window.h"
#include "kernels/stem_conv.h"

namespace mdq::kernels {

// Whether the current device runs the kernel: bf16 mma.sync needs compute capability 8.0.
bool stem_conv_mma_supported();

// Launchers: device pointers, queued on mdq::cuda::stream(), outputs as stem_conv.h's (y 16-byte
// aligned, bits 8-byte aligned). The shape must fit (stem_conv_fits; stem_signs_fit for the
// signs), else an error. Return false, launching nothing, where !stem_conv_mma_supported(): the
// caller then runs the direct kernel (engine/packed/stem_conv.cpp does).
bool stem_conv_mma_nhwc_bf16(const StemConvArgs& a, uint16_t* y);
bool stem_conv_mma_nhwc_f32(const StemConvArgs& a, float* y);
bool stem_conv_mma_signs(const StemConvArgs& a, uint32_t* bits);

// ---- CPU reference (host pointers): the equation above with the sum in double. Not what the
// engine's CPU path runs (that is the direct kernel's reference, stem_conv.h): the tests' yardstick.
namespace reference::mma {

inline double bf16_round(float v) { return bf16_to_float(float_to_bf16(v)); }

// d of output pixel (n, oh, ow) and filter o from bf16-rounded images and weights, summed in
// double; *abs_sum (if given) gets sum |term|, the magnitude an f32 sum's rounding errors scale
// with.
inline double stem_sum(const StemConvArgs& a, int n, int oh, int ow, int o, double* abs_sum = nullptr) {
  const int64_t plane = int64_t(a.H) * a.W;
  double d = 0, s = 0;
  for (int c = 0; c < a.C; ++c)
    for (int kh = 0; kh < a.KH; ++kh)
      for (int kw = 0; kw < a.KW; ++kw) {
        const int ih = oh * a.stride - a.pad + kh, iw = ow * a.stride - a.pad + kw;
        if (ih < 0 || ih >= a.H || iw < 0 || iw >= a.W) continue;
        const double t = bf16_round(a.x[(int64_t(n) * a.C + c) * plane + int64_t(ih) * a.W + iw]) *
                         bf16_round(a.w[((int64_t(o) * a.C + c) * a.KH + kh) * a.KW + kw]);
        d += t;
        s += std::fabs(t);
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

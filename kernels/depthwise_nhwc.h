// Depthwise 2-D convolution on NHWC bf16 activations (kernels/depthwise_nhwc.cu): the
// convolutions with groups == C == O, one KH x KW filter per channel (MobileNetV2's 3x3 layers),
// which cuDNN's bf16 NHWC kernels were slow at and which otherwise ran at TF32 on f32 NCHW copies.
// kernels/conv2d.cu hands conv2d_*_nhwc_bf16 calls of that shape here.
//
// Operands as conv2d.h's NHWC bf16 path: x bf16 [N][H][W][C], y and dy bf16 [N][OH][OW][C], dx
// bf16 like x, w f32 [C][1][KH][KW] (rounded to bf16 as it is read, as the cuDNN path rounds its
// filter), bias f32 [C] or null, dw f32 [C][1][KH][KW]. Sums in f32; each bf16 output rounded once
// to nearest even, and a biased output twice: y = bf16(bf16(conv) + bias[c]), as the cuDNN path.
// The taps of one output are summed in (kh, kw) order, the CPU reference's order
// (engine/ops/conv2d.cpp), and bf16 x bf16 products are exact in f32, so y and dx should equal
// the reference bit for bit; dw sums over the batch in another order than the CPU's. Every
// result is the same bits on every run (no float atomics). Device pointers; work is queued on
// mdq::cuda::stream(); scratch comes from the caching allocator (no host sync, graph-safe).
#pragma once
#include <cstdint>

#include "kernels/conv2d.h"

namespace mdq::kernels {

// Whether the kernels below take g: depthwise (groups == C == O), a filter of at most
// kDepthwiseMaxTaps taps (its bf16 weights are staged in shared memory) and fewer than 2^31
// pixels a tensor.
constexpr int64_t kDepthwiseMaxTaps = 1536;
bool depthwise_nhwc_bf16_fits(const Conv2dGeometry& g);

// y[n,oh,ow,c] = bf16( Σ_{kh,kw} x[n, oh·s − p + kh, ow·s − p + kw, c] · w[c,kh,kw] ), taps
// outside the image 0; with a bias, bf16(y + bias[c]).
void depthwise_forward_nhwc_bf16(const Conv2dGeometry& g, const uint16_t* x, const float* w, const float* bias,
                                 uint16_t* y);
// dx[n,ih,iw,c] = bf16( Σ dy[n,oh,ow,c] · w[c,kh,kw] ) over the taps with ih = oh·s − p + kh and
// iw = ow·s − p + kw for an output (oh, ow) inside [0, OH) x [0, OW);
// dw[c,kh,kw] = Σ_{n,oh,ow} dy[n,oh,ow,c] · x[n, oh·s − p + kh, ow·s − p + kw, c] (f32).
// dx or dw may be null (not wanted); x may be null when dw is.
void depthwise_backward_nhwc_bf16(const Conv2dGeometry& g, const uint16_t* dy, const uint16_t* x, const float* w,
                                  uint16_t* dx, float* dw);

}  // namespace mdq::kernels

// 2-D convolution (the math: engine/ops/conv2d.h) on the GPU through cuDNN (kernels/conv2d.cu):
// on NCHW f32 tensors (under BF16 cuDNN works on NHWC bf16 copies of them), or on NHWC bf16
// activations as they are (below); and the geometry that both it and the CPU reference
// (engine/ops/conv2d.cpp) work from, so the two take the same arguments. Device pointers; work
// is queued on mdq::cuda::stream(); the precision comes with each call.
#pragma once
#include <cstddef>
#include <cstdint>

#include "common/precision.h"

namespace mdq::kernels {

// Checked by the engine before any call (engine/ops/conv2d.cpp's geometry()).
struct Conv2dGeometry {
  int64_t N, C, H, W;     // input
  int64_t O, Cg, KH, KW;  // weight; Cg = C / groups input channels per group
  int64_t OH, OW;         // output
  int64_t groups, Og;     // Og = O / groups output channels per group
  int64_t stride, pad;
};

// y = x * w (+ bias[o] when bias is non-null).
void conv2d_forward_f32(const Conv2dGeometry& g, Precision p, const float* x, const float* w, const float* bias,
                        float* y);
// The gradients from dy (the forward output's gradient): dx from dy and w, dw from dy and the
// forward input x. Either output may be null (then its operand may be too); one call does both
// so that under BF16 dy is converted once. dx_add: dx += the input gradient instead of dx = (a
// gradient summed into the one x already has, as autograd does where x feeds two branches).
void conv2d_backward_f32(const Conv2dGeometry& g, Precision p, const float* dy, const float* x, const float* w,
                         float* dx, bool dx_add, float* dw);
// ---- bf16 NHWC activations (the bf16 training path, docs/DESIGN.md §2): x bf16 [N][H][W][C],
// y and dy bf16 [N][OH][OW][O], dx bf16 like x; w f32 [O][Cg][KH][KW] (rounded to a bf16
// filter on each call, or once for both directions: below), dw f32. cuDNN's bf16 tensor-core
// kernels read and write the activations as they are (no transposes) with f32 accumulation;
// y = bf16(conv) and, with a bias, bf16(y + bias[o]) (a second rounding). Depthwise convolutions (groups == C == O) run on mdq's own
// NHWC bf16 kernels instead, with the same roundings (kernels/depthwise_nhwc.h). Input channels
// that are not a multiple of 8 (a 3-channel stem) go to cuDNN zero-padded to one, which changes
// no value. Two kinds of shape run as GEMMs on cuBLAS instead (kernels/conv2d.cu, bf16_route;
// MDQ_CONV_GEMM=0 keeps them on cuDNN): 1x1 convolutions without padding, on the pixels they
// read, and few-channel ones (the stems) on an im2col of x, whose dx stays on cuDNN. They take
// bf16 operands with f32 sums and round y and dx to bf16 as cuDNN does; dw comes out of cuBLAS
// in f32, without the bf16 rounding cuDNN's dw has. A shape none of these take (other grouped
// convolutions, O not a multiple of 8, or no bf16 algorithm in cuDNN for it) runs at TF32 on
// f32 NCHW copies, converted in and out. dx and dw may be null (not wanted).
// filter: the bf16 form of w that g's route reads (conv2d_filter_nhwc_bf16), made once and
// handed to both directions, or nullptr: each call then makes its own from w.
void conv2d_forward_nhwc_bf16(const Conv2dGeometry& g, const uint16_t* x, const float* w, const uint16_t* filter,
                              const float* bias, uint16_t* y);
void conv2d_backward_nhwc_bf16(const Conv2dGeometry& g, const uint16_t* dy, const uint16_t* x, const float* w,
                               const uint16_t* filter, uint16_t* dx, float* dw);
// The bf16 filter of w the bf16 route of g reads (a layout of its own: [O][KH][KW][C'] for
// cuDNN, [O][K] for the GEMM routes), and its size in elements; 0 when g reads the f32 weight
// itself (depthwise kernels, the TF32 fallback). It follows bf16_route, so make and use it
// under one MDQ_CONV_GEMM setting. In a training step the forward makes it, and the
// backward-data pass reads the same one (on an H200 ResNet-18 spent 0.28 ms of its 2.6 ms step
// at batch 128 converting weights, 34 launches of them).
int64_t conv2d_filter_elems_nhwc_bf16(const Conv2dGeometry& g);
void conv2d_filter_nhwc_bf16(const Conv2dGeometry& g, const float* w, uint16_t* filter);
// db [O] = dy [N, O, OH, OW] summed over N, OH, OW.
void conv2d_backward_bias_f32(int64_t N, int64_t O, int64_t OH, int64_t OW, const float* dy, float* db);

// What the cuDNN plan cache holds for one shape under one precision: the
// cudnnConvolution*Algo_t and cudnnMathType_t of each direction (as ints, so this header needs
// no cuDNN include) and its workspace bytes; algo -1 where that direction has not run yet. The
// benchmark reuses these to call cuDNN directly with the same choices.
struct CudnnConvChoice {
  int algo = -1, math_type = -1;
  size_t workspace_bytes = 0;
};
struct CudnnConvChoices {
  CudnnConvChoice forward, backward_data, backward_filter;
  bool bf16 = false;  // the plan runs on NHWC bf16 copies (BF16 and a shape that suits it)
};
CudnnConvChoices cudnn_conv2d_choices(const Conv2dGeometry& g, Precision p);

}  // namespace mdq::kernels

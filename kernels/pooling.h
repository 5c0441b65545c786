// Launchers for the pooling kernels (kernels/pooling.cu) on NCHW f32 tensors seen as
// `planes` = N*C independent H x W planes. Device pointers, queued on mdq::cuda::stream().
// CPU reference and the window rules: engine/ops/pooling.{h,cpp}.
#pragma once
#include <cstdint>

namespace mdq::kernels {

// Geometry shared by max and average pooling: a square kernel, one stride, one zero padding.
struct Pool2dShape {
  int64_t planes;  // N * C
  int h, w;        // input plane
  int out_h, out_w;
  int kernel, stride, padding;
};

// out and argmax are [planes, out_h, out_w]; argmax holds h*W + w of the max inside its plane.
void max_pool2d_forward_f32(const Pool2dShape& s, const float* x, float* out, int32_t* argmax);
// Gather: each input element sums the grads of the outputs whose argmax is it (deterministic).
void max_pool2d_backward_f32(const Pool2dShape& s, const float* grad_out, const int32_t* argmax, float* grad_in);
// Divisor kernel*kernel always (count_include_pad = true).
void avg_pool2d_forward_f32(const Pool2dShape& s, const float* x, float* out);
void avg_pool2d_backward_f32(const Pool2dShape& s, const float* grad_out, float* grad_in);

// out[p] = mean of plane p (hw elements); one warp per plane.
void global_avg_pool_forward_f32(const float* x, float* out, int64_t planes, int64_t hw);
// grad_in[p*hw + i] = grad_out[p] / hw
void global_avg_pool_backward_f32(const float* grad_out, float* grad_in, int64_t planes, int64_t hw);

}  // namespace mdq::kernels

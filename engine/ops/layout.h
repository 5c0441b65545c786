// bf16 NHWC activations. Under --precision bf16 on the GPU the activations between layers are
// bf16 tensors whose shape is [N, H, W, C] (channels innermost): the layout cuDNN's bf16
// tensor-core convolutions read and write, so no layer transposes (docs/DESIGN.md §2). Ops tell
// the two forms apart by dtype: a 4-D bf16 activation is NHWC, a 4-D f32 one NCHW. Convolutions,
// BatchNorm, the residual sums and the activations (relu, relu6, sign) take both and answer in
// the form they were given (a convolution answers in the form the precision asks for); every
// other op takes NCHW f32, and its layer converts (engine/nn/layout.h).
#pragma once
#include "engine/tensor.h"

namespace mdq::ops {

bool is_nhwc_bf16(const Tensor& t);  // 4-D and bf16
// Whether new activations on `device` are bf16 NHWC: precision() is BF16 and the device the GPU
// (the CPU computes in f32 at every precision), or the CPU inside an NhwcBf16OnCpu scope (tests
// run the bf16 path's layers and conversions on the CPU references this way).
bool nhwc_bf16_activations(Device device);
class NhwcBf16OnCpu {
 public:
  NhwcBf16OnCpu();
  ~NhwcBf16OnCpu();
  NhwcBf16OnCpu(const NhwcBf16OnCpu&) = delete;
  NhwcBf16OnCpu& operator=(const NhwcBf16OnCpu&) = delete;

 private:
  bool previous_;
};

// The NCHW shape an activation stands for: [N, C, H, W] for an NHWC bf16 one, else its own shape.
Shape nchw_shape(const Tensor& t);
// Its channel count: dim 3 of an NHWC bf16 activation, else dim 1.
int64_t channels(const Tensor& t);

Tensor to_nhwc_bf16(const Tensor& x);  // f32 [N, C, H, W] -> bf16 [N, H, W, C], rounded to nearest even
Tensor to_nchw_f32(const Tensor& x);   // bf16 [N, H, W, C] -> f32 [N, C, H, W], exact

}  // namespace mdq::ops

// The stem of packed inference as one pass (issue #16): the model's first convolution read
// straight from the f32 NCHW images, with the BatchNorm (and bias) folded after it and its ReLU,
// written NHWC as the plan's Dense activations, bf16 or f32, or, when a sign follows, as its
// packed bits (engine/infer/steps.h, Bf16Stem).
// On the GPU one kernel, by StemArithmetic: the direct kernel (kernels/stem_conv.cu: f32 FMAs on
// CUDA cores, no padded copy of the images, no bf16 rounding of the sums; its CPU reference takes
// the same sums in the same order, so the two agree bit for bit), or the same stem on tensor cores
// (kernels/stem_conv_mma.cu: images and weights as bf16 operands, split in two parts or rounded,
// f32 sums in the MMAs' order). The formula and the shapes
// taken: kernels/stem_conv.h (both kernels take the same).
#pragma once
#include "engine/ops/conv2d.h"
#include "engine/tensor.h"
#include "kernels/stem_conv.h"
#include "kernels/stem_conv_mma.h"

namespace mdq::packed {

// Whether the direct kernel takes a convolution of C input channels, O filters, a KH x KW window
// and params: C <= 4, O in {16, 32, 64}, KH, KW <= 7, stride 1 or 2, any padding, groups 1.
bool stem_conv_fits(int64_t C, int64_t O, int64_t KH, int64_t KW, const ops::Conv2dParams& p);
// The same for a weight f32 [O][C][KH][KW].
bool stem_conv_fits(const Tensor& weight, const ops::Conv2dParams& p);

// Whether the signs form (stem_conv_signs) takes it: what stem_conv_fits takes, with O 32 or 64
// (whole words of 32 filters).
bool stem_signs_fit(const Tensor& weight, const ops::Conv2dParams& p);

// Whether plans run their stem on the direct kernel where it fits: on unless the environment
// says MDQ_STEM_DIRECT=0 (read on every call, so one process can time both ways).
bool stem_direct_enabled();

// How the stem's sums d are computed. F32: the direct kernel's f32 fma chain. The tensor-core
// forms (kernels/stem_conv_mma.h has the equations), where they run (stem_tensor_cores_available):
//   SplitBf16TensorCores: images and weights each as two bf16 parts, three MMAs a product: each
//     product within 3.02 * 2^-16 of the f32 one, sums in f32; what packed inference takes by default.
//   Bf16TensorCores: images and weights rounded to bf16 (2^-8), one MMA a product: the fastest,
//     and the roundings flip the signs of near-zero outputs (0.04% of ImageNet ResNet-18's).
// Elsewhere F32 runs instead: on a CUDA device below compute capability 8.0, and on the CPU,
// which has no tensor cores (its result is then the direct kernel's reference, bit for bit, not
// a model of the bf16 rounding).
enum class StemArithmetic { F32, SplitBf16TensorCores, Bf16TensorCores };

// Whether `a` is one of the tensor-core forms.
inline bool on_tensor_cores(StemArithmetic a) { return a != StemArithmetic::F32; }
// The tensor-core launcher's operands (kernels/stem_conv_mma.h) for a form on tensor cores.
kernels::StemMmaOperands stem_mma_operands(StemArithmetic a);

// Whether the tensor-core forms run on tensor cores on `device`: a CUDA device of compute capability
// 8.0 or later (bf16 mma.sync).
bool stem_tensor_cores_available(Device device);

// x f32 NCHW [N][C][H][W], weight f32 [O][C][KH][KW], scale and shift f32 [O] or undefined (1,
// 0), all on one device -> out (BF16 or F32) NHWC [N][OH][OW][O],
// y = act(scale[o] conv(x, w)[n][o][oh][ow] + shift[o]), act = ReLU when relu, else identity.
// The shape must fit (stem_conv_fits); anything else is an mdq::Error naming the operand.
Tensor stem_conv_nhwc(const Tensor& x, const Tensor& weight, const Tensor& scale, const Tensor& shift,
                      const ops::Conv2dParams& p, bool relu, DType out,
                      StemArithmetic arithmetic = StemArithmetic::F32);

// The same convolution and epilogue with the sign activation after it, as the next layer's bits
// (W1A1 plans): -> u32 [N][OH][OW][O/32], bit o % 32 of word o / 32 set iff y >= 0, y as above
// in f32 -- what pack_signs (engine/packed/bitpack.h) makes of stem_conv_nhwc's f32 output, bit
// for bit, without writing that output (in either arithmetic). The shape must fit stem_signs_fit.
Tensor stem_conv_signs(const Tensor& x, const Tensor& weight, const Tensor& scale, const Tensor& shift,
                       const ops::Conv2dParams& p, bool relu, StemArithmetic arithmetic = StemArithmetic::F32);

// The checks both forms make (op names the caller in their errors), the output's shape
// [N][OH][OW][O] (its O then divided by 32 in the signs form), and the kernel's arguments: for a
// tool or test that calls a stem kernel itself on the same operands.
// signs: the signs form's check too (O whole words).
kernels::StemConvArgs stem_conv_args(const char* op, const Tensor& x, const Tensor& weight, const Tensor& scale,
                                     const Tensor& shift, const ops::Conv2dParams& p, bool relu, bool signs,
                                     Shape* out_shape);

}  // namespace mdq::packed

// Runs a rounded network (binary or ternary weights, float ReLU activations, DESIGN.md E11/E12)
// on the packed kernels: every convolution and linear layer through packed::w1a16_conv2d /
// w1a16_linear with its weights kept packed, eval-mode BatchNorm and the layer's bias folded
// into the kernel's per-channel scale/shift with ReLU fused, NHWC activations in between
// (kernels/nhwc_bf16.h for residual add, pooling and layout changes).
// Two precisions (PackedPrecision): BF16 keeps activations in bf16 (8 significant bits; the
// fastest, but the rounding flips the top-1 class of ~0.3-0.9% of images); SplitBF16 (the
// default) keeps them in f32 and feeds each conv/linear a = hi + lo as twice the channels, hi =
// bf16(a), lo = bf16(a - hi) (~16 bits), with the layer's weights packed twice along the input
// channels ([O][2C]): the unchanged bf16 kernels then compute sum w (hi + lo) in f32, which
// agrees with the float engine to ~1e-5 of the largest logit, for twice the K work per layer.
// It lives in the engine (not apps/common) so GPU tests, which link libmdq only, can reach it.
// Works on CUDA (the point) and on the CPU (the packed ops' reference loops; slow, for tests).
//
// Covered: nets built from Sequential, Conv2d (groups 1), BatchNorm2d, ReLU, MaxPool2d,
// GlobalAvgPool, Flatten, Linear and residual blocks with children "body", optional "shortcut"
// and a ReLU "act" (models/resnet18.cpp's BasicBlock): smallcnn, resnet18 and vgg16. Not
// covered (build() says why): grouped/depthwise convs and ReLU6 (mobilenetv2), binary
// activations (act_bits = 1), weights that are not all ±1 or all in {-1, 0, 1}.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "engine/nn/batchnorm.h"
#include "engine/nn/module.h"
#include "engine/packed/packed_conv.h"

namespace mdq::infer {

// Eval-mode BatchNorm after a layer with bias b, as one affine map of the layer's raw output d:
// BN(d + b) = scale d + shift, scale = gamma invstd, shift = (b - mean) gamma invstd + beta,
// invstd = 1 / sqrt(running_var + eps) (engine/ops/batchnorm.cpp's eval formula; gamma = 1,
// beta = 0 without affine parameters). bias may be undefined (0); bn may be null (scale 1,
// shift b). Computed in double on the host; returns f32 [O] CPU tensors.
struct FoldedAffine {
  Tensor scale, shift;
};
FoldedAffine fold_batchnorm(const Tensor& bias, nn::BatchNorm2d* bn, int64_t out_channels);

enum class PackedPrecision { BF16, SplitBF16 };
const char* packed_precision_name(PackedPrecision p);   // "bf16" | "split"
PackedPrecision parse_packed_precision(const std::string& name);  // "bf16" | "split", else throws

class PackedRunner {
 public:
  // Packs the model's (rounded) weights onto `device`. Returns null and sets *why_not to a
  // one-line reason when the network has something the packed path does not cover.
  static std::unique_ptr<PackedRunner> build(nn::Module& model, Device device, std::string* why_not,
                                             PackedPrecision precision = PackedPrecision::SplitBF16);

  // images f32 NCHW [N][C][H][W] on the runner's device -> logits f32 [N][classes] there.
  Tensor logits(const Tensor& images);
  // e.g. "10 binary convs, 1 binary linear" (for mdq-infer's report line).
  std::string summary() const;
  PackedPrecision precision() const { return precision_; }

  struct Step;  // one fused layer (packed_runner.cpp)
  ~PackedRunner();
  PackedRunner();

 private:
  Device device_ = Device::CPU;
  PackedPrecision precision_ = PackedPrecision::SplitBF16;
  std::vector<Step> steps_;
};

}  // namespace mdq::infer

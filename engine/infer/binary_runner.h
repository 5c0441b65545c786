// Runs a fully binary network (binary weights and sign activations, act_bits = 1; DESIGN.md E11,
// E12) on the W1A1 kernels: every convolution or linear layer whose input is ±1 goes through
// packed::binary_conv2d (AND+popc, integer-exact) and writes the next layer's packed bits itself
// (SignPack), residual blocks end in one packed::binary_conv2d_residual, max pools of ±1 values
// are ORs of bits. Layers whose input is real-valued (the stem conv on the image, a classifier
// after global average pooling) run on the float engine's own ops in f32, so they are exactly
// what the float engine computes.
//
// Agreement with the float engine (the rounded network as mdq-train evaluates it):
//  - float layers: the same ops on the same values, bit for bit;
//  - W1A1 conv/linear + [BN] + sign: the dot product d is exact, and the sign is decided by
//    integer thresholds found by running the float engine's own BatchNorm, on the runner's
//    device, over every possible d (sign_thresholds_of), so the bits equal the float engine's
//    sign(BN(d + bias)) wherever the float engine's d is exact (sign(0) = +1 in both: SignSTE
//    gives +1 at 0, SignPack sets the bit for y >= 0; they differ only on NaN, which SignSTE
//    keeps and the bits cannot hold);
//  - residual blocks: y = scale d + shift + skip with BatchNorm folded (fold_batchnorm), whose
//    f32 rounding differs from the float engine's (d - mean) invstd gamma + beta + skip by a few
//    ulps, so a sign can differ where |y| is within ~1e-6 of 0 (none seen in the tests);
//  - a final linear on ±1 inputs: d + bias, rounded once, as the float engine's matmul + bias.
// Works on CUDA (the point) and on the CPU (the packed ops' reference loops; slow, for tests).
//
// Covered: Sequential, Conv2d, BatchNorm2d, SignSTE, MaxPool2d, GlobalAvgPool, Flatten, Linear,
// ReLU, and residual blocks (children "body", optional "shortcut", "act") whose body is
// conv-BN-sign-conv-BN, shortcut empty or conv-BN, act a SignSTE: smallcnn, resnet18 and vgg16
// with act_bits = 1. A conv on ±1 inputs whose weights are not ±1, grouped, or with more than 31
// taps runs on the float engine (the bits unpacked). Not covered (build() says why): ReLU6 and
// other layers it does not know, residual blocks of another shape.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "engine/nn/batchnorm.h"
#include "engine/nn/module.h"
#include "engine/packed/packed_conv.h"

namespace mdq::infer {

// True when the model has a sign activation (nn::SignSTE) anywhere: the W1A1 runner's nets.
bool has_sign_activations(const nn::Module& model);

// Integer thresholds i32 [2][O] (dmin, then flip; the layout of packed::sign_thresholds) on
// `device` such that (d >= dmin) xor flip equals the float engine's sign(BN(d + bias)) >= 0 on
// `device` for every |d| <= KH·KW·C of w: found by running ops::batch_norm_forward (eval) on
// every such d. bias may be undefined (0), bn null (no BN: the sign of d + bias).
Tensor sign_thresholds_of(const packed::PackedWeights& w, const Tensor& bias, nn::BatchNorm2d* bn, Device device);

class BinaryRunner {
 public:
  // Packs the model's binary weights onto `device`. Returns null and sets *why_not to a one-line
  // reason naming the layer when the network has something the runner does not cover.
  static std::unique_ptr<BinaryRunner> build(nn::Module& model, Device device, std::string* why_not);

  // images f32 NCHW [N][C][H][W] on the runner's device -> logits f32 [N][classes] there.
  Tensor logits(const Tensor& images);
  // e.g. "19 W1A1 convs (8 residual blocks); float: 1 conv, 1 linear" (for mdq-infer's report line).
  std::string summary() const;

  struct Step;  // one fused layer (binary_runner.cpp)
  ~BinaryRunner();
  BinaryRunner();

 private:
  Device device_ = Device::CPU;
  std::vector<Step> steps_;
};

}  // namespace mdq::infer

// The bf16 NHWC activation path on the GPU (cuDNN's bf16 NHWC convolutions, the depthwise NHWC
// kernels, the NHWC BatchNorm and bf16 elementwise kernels, the layout changes) against the f32
// NCHW CPU reference (tests/support/nhwc_path.h states the checks and their bounds).
#include "tests/support/nhwc_path.h"

using namespace mdq;

TEST_CASE("layout changes between NCHW f32 and NHWC bf16 on the GPU, and their gradients") {
  testing::check_layout_changes(Device::CUDA);
}

TEST_CASE("layers on NHWC bf16 activations on the GPU equal their f32 CPU selves within bf16 rounding") {
  testing::check_nhwc_layers(Device::CUDA);
}

TEST_CASE("ResNet-18 and VGG-16 on NHWC bf16 activations on the GPU track the f32 CPU path") {
  // Against the CPU references of the same bf16 NHWC path (the same roundings; cuDNN sums in
  // another order, so a few ReLU masks still flip) and against the f32 path.
  for (bool ref_bf16 : {true, false}) {
    testing::check_nhwc_network("resnet18", 4, Device::CUDA, ref_bf16, 0.9, 0.05);
    testing::check_nhwc_network("vgg16", 16, Device::CUDA, ref_bf16, 0.7, 0.2);
  }
}

TEST_CASE("MobileNetV2 on NHWC bf16 activations on the GPU tracks the CPU paths") {
  // Chaotic at its initialisation (tests/cpu/test_nhwc_path.cpp: on the CPU the bf16 path's
  // lowest cosine with the f32 path is 0.38 and its logits 0.177 away at batch 16), so the
  // bounds, set from that CPU measurement and not yet from a GPU run, only catch a gross error.
  for (bool ref_bf16 : {true, false}) testing::check_nhwc_network("mobilenetv2", 16, Device::CUDA, ref_bf16, 0.2, 0.35);
}

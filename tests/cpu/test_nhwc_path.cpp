// The bf16 NHWC activation path on the CPU references (tests/support/nhwc_path.h states the
// checks and their bounds): the layout changes, each layer that takes NHWC bf16, and ResNet-18,
// VGG-16 and MobileNetV2 forward and backward against the f32 NCHW path.
#include "tests/support/nhwc_path.h"

#include "engine/nn/pooling.h"

using namespace mdq;

TEST_CASE("layout changes between NCHW f32 and NHWC bf16, and their gradients") {
  testing::check_layout_changes(Device::CPU);
}

TEST_CASE("layers on NHWC bf16 activations equal their f32 selves within bf16 rounding (CPU)") {
  ops::NhwcBf16OnCpu on;
  testing::check_nhwc_layers(Device::CPU);
}

TEST_CASE("ResNet-18 and VGG-16 on NHWC bf16 activations track the f32 path (CPU)") {
  ops::NhwcBf16OnCpu on;
  testing::check_nhwc_network("resnet18", 4, Device::CPU, false, 0.9, 0.05);
  testing::check_nhwc_network("vgg16", 16, Device::CPU, false, 0.7, 0.2);
}

// MobileNetV2 (depthwise convolutions and ReLU6 on NHWC bf16) is chaotic at its initialisation
// as VGG-16 is: each layer alone agrees to 2^-7 (check_nhwc_layers), but across its 52 layers
// the gradients' cosine with the f32 path falls with depth from 0.99 (the classifier) to ~0.4
// (the first blocks) and the logits end 15-18% away in L2 (measured at batch 4, 8, 16 and 32:
// cosine 0.25-0.38, batch 16 0.38 and 0.177), so the bounds only catch a gross error.
TEST_CASE("MobileNetV2 on NHWC bf16 activations tracks the f32 path (CPU)") {
  ops::NhwcBf16OnCpu on;
  testing::check_nhwc_network("mobilenetv2", 16, Device::CPU, false, 0.3, 0.25);
}

TEST_CASE("bf16 NHWC activations are the GPU's under bf16 only, and ops name a form they do not take") {
  {
    testing::PrecisionScope bf16(Precision::BF16);
    REQUIRE_FALSE(ops::nhwc_bf16_activations(Device::CPU));
    REQUIRE(ops::nhwc_bf16_activations(Device::CUDA));
    ops::NhwcBf16OnCpu on;
    REQUIRE(ops::nhwc_bf16_activations(Device::CPU));
  }
  testing::PrecisionScope tf32(Precision::TF32);
  REQUIRE_FALSE(ops::nhwc_bf16_activations(Device::CUDA));
  const Tensor x = ops::to_nhwc_bf16(testing::random_tensor({2, 4, 3, 3}, 1));
  // An NHWC bf16 gradient needs the NHWC input itself.
  const Tensor w = testing::random_tensor({4, 4, 3, 3}, 2);
  REQUIRE_THROWS_WITH(ops::conv2d_backward(x, testing::random_tensor({2, 4, 3, 3}, 3), w, {1, 1, 1}, true, true),
                      Catch::Contains("NHWC bf16, so the input must be too"));
  // The activations are elementwise and keep the form they are given; a layer without an NHWC
  // kernel converts: max pooling answers in NCHW f32.
  for (const Var& a : {nn::relu(Var(x)), nn::relu6(Var(x)), nn::sign_ste(Var(x))}) REQUIRE(ops::is_nhwc_bf16(a.value()));
  REQUIRE(nn::max_pool2d(Var(x), 2, 1, 0).value().shape() == Shape{2, 4, 2, 2});
  REQUIRE(nn::max_pool2d(Var(x), 2, 1, 0).value().dtype() == DType::F32);
}

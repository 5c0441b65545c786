// The bf16 NHWC activation path on the GPU (cuDNN's bf16 NHWC convolutions, the NHWC BatchNorm
// and bf16 elementwise kernels, the layout changes) against the f32 NCHW CPU reference
// (tests/support/nhwc_path.h states the checks and their bounds).
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
  for (const char* name : {"resnet18", "vgg16"}) {
    const int64_t batch = std::string(name) == "vgg16" ? 16 : 4;
    testing::check_nhwc_network(name, batch, Device::CUDA, true, 0.9);
    testing::check_nhwc_network(name, batch, Device::CUDA, false, 0.7);
  }
}

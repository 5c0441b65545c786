// ResNet-18 (He et al. 2016). CIFAR variant (image ≤ 32): 3×3 stride-1 stem, no max-pool, as in
// the reference code; TinyImageNet (64): 3×3 stride-2 stem, no max-pool, so stages see 32×32 as
// on CIFAR; ImageNet (≥ 128): 7×7 stride-2 stem and 3×3 stride-2 max-pool.
#include "models/layers_util.h"

namespace mdq::models {
namespace {

// Two 3×3 conv+BN with an identity (or 1×1 conv+BN) shortcut, activation after the sum.
std::shared_ptr<nn::Residual> basic_block(const ModelOptions& o, SeedSequence& seeds, int64_t in, int64_t out,
                                          int64_t stride) {
  auto body = std::make_shared<nn::Sequential>();
  add_conv_bn_act(*body, o, seeds, in, out, 3, stride);
  add_conv_bn_act(*body, o, seeds, out, out, 3, 1, 1, false, /*act=*/false);
  std::shared_ptr<nn::Sequential> shortcut;
  if (stride != 1 || in != out) {
    shortcut = std::make_shared<nn::Sequential>();
    shortcut->add(std::make_shared<nn::Conv2d>(in, out, 1, stride, 0, 1, false, seeds()));
    shortcut->add(std::make_shared<nn::BatchNorm2d>(out, o.bn_affine));
  }
  return std::make_shared<nn::Residual>(body, shortcut, activation(o));
}

}  // namespace

std::shared_ptr<nn::Module> make_resnet18(const ModelOptions& o) {
  SeedSequence seeds(o.seed);
  auto net = std::make_shared<nn::Sequential>();
  auto stem = net->add(std::make_shared<nn::Sequential>());
  if (o.image_size >= 128) {
    add_conv_bn_act(*stem, o, seeds, o.in_channels, 64, 7, 2);
    stem->add(std::make_shared<nn::MaxPool2d>(3, 2, 1));
  } else {
    add_conv_bn_act(*stem, o, seeds, o.in_channels, 64, 3, o.image_size >= 64 ? 2 : 1);
  }
  int64_t in = 64;
  const int64_t widths[4] = {64, 128, 256, 512};
  for (int stage = 0; stage < 4; ++stage) {
    auto layer = net->add(std::make_shared<nn::Sequential>());
    for (int b = 0; b < 2; ++b) {
      int64_t stride = (stage > 0 && b == 0) ? 2 : 1;
      layer->add(basic_block(o, seeds, in, widths[stage], stride));
      in = widths[stage];
    }
  }
  net->add(std::make_shared<nn::GlobalAvgPool>());
  net->add(std::make_shared<nn::Linear>(512, o.num_classes, true, seeds()));
  return net;
}

}  // namespace mdq::models

// VGG-16 (Simonyan & Zisserman 2015). 13 conv(3×3, bias)+BN+activation in five blocks with
// 2×2 max-pools. CIFAR variant (≤ 32): classifier 512→512→512→classes with BN and activation,
// as in the reference code. ImageNet variant: 25088→4096→4096→classes (no dropout: mdq has none;
// dropout has no parameters, so counts match torchvision's vgg16_bn).
#include "models/layers_util.h"

namespace mdq::models {

std::shared_ptr<nn::Module> make_vgg16(const ModelOptions& o) {
  SeedSequence seeds(o.seed);
  const int plan[] = {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0};
  auto net = std::make_shared<nn::Sequential>();
  auto features = net->add(std::make_shared<nn::Sequential>());
  int64_t in = o.in_channels, size = o.image_size;
  for (int c : plan) {
    if (c == 0) {
      features->add(std::make_shared<nn::MaxPool2d>(2, 2, 0));
      size /= 2;
    } else {
      add_conv_bn_act(*features, o, seeds, in, c, 3, 1, 1, false, true, /*conv_bias=*/true);
      in = c;
    }
  }
  MDQ_CHECK(size >= 1, "vgg16: input " << o.image_size << "×" << o.image_size << " is too small for five max-pools");
  net->add(std::make_shared<nn::Flatten>());
  auto classifier = net->add(std::make_shared<nn::Sequential>());
  const bool imagenet = o.image_size >= 128;
  const int64_t flat = 512 * size * size, hidden = imagenet ? 4096 : 512;
  classifier->add(std::make_shared<nn::Linear>(flat, hidden, true, seeds()));
  if (!imagenet) classifier->add(std::make_shared<nn::BatchNorm2d>(hidden, o.bn_affine));
  classifier->add(activation(o));
  classifier->add(std::make_shared<nn::Linear>(hidden, hidden, true, seeds()));
  if (!imagenet) classifier->add(std::make_shared<nn::BatchNorm2d>(hidden, o.bn_affine));
  classifier->add(activation(o));
  classifier->add(std::make_shared<nn::Linear>(hidden, o.num_classes, true, seeds()));
  return net;
}

}  // namespace mdq::models

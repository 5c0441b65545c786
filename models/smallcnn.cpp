// A small CNN for CPU runs (the README's main job without a GPU) and for tests:
// conv3×3(16) → BN → act → max-pool 2 → conv3×3(32) → BN → act → max-pool 2 → conv3×3(64) → BN →
// act → max-pool 2 → flatten → linear. Flattening (not global pooling) gives the last layer 64·3·3
// inputs on 28×28 images: a binary linear layer over only 64 pooled features was the bottleneck
// of the rounded network.
#include "models/layers_util.h"

namespace mdq::models {

std::shared_ptr<nn::Module> make_smallcnn(const ModelOptions& o) {
  SeedSequence seeds(o.seed);
  auto net = std::make_shared<nn::Sequential>();
  add_conv_bn_act(*net, o, seeds, o.in_channels, 16, 3, 1);
  net->add(std::make_shared<nn::MaxPool2d>(2, 2, 0));
  add_conv_bn_act(*net, o, seeds, 16, 32, 3, 1);
  net->add(std::make_shared<nn::MaxPool2d>(2, 2, 0));
  add_conv_bn_act(*net, o, seeds, 32, 64, 3, 1);
  net->add(std::make_shared<nn::MaxPool2d>(2, 2, 0));
  net->add(std::make_shared<nn::Flatten>());
  const int64_t side = o.image_size / 8;
  MDQ_CHECK(side >= 1, "smallcnn: input " << o.image_size << " is too small for three max-pools");
  net->add(std::make_shared<nn::Linear>(64 * side * side, o.num_classes, true, seeds()));
  return net;
}

}  // namespace mdq::models

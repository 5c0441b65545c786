// MobileNetV2 (Sandler et al. 2018): inverted residual blocks (1×1 expand, 3×3 depthwise, 1×1
// linear projection), ReLU6. ImageNet variant: stride-2 stem, the paper's (t, c, n, s) table.
// CIFAR variant (≤ 32): stride-1 stem and stride 1 in the second stage, the usual CIFAR change.
#include "models/layers_util.h"

namespace mdq::models {
namespace {

// 1×1 expand, 3×3 depthwise, 1×1 linear projection; the input is added back (no activation
// after the sum) only where the shapes allow it. Without the skip the block is a one-layer
// Sequential whose layer keeps the name "body", so both kinds of block name their parameters
// "<block>.body.<layer>.weight".
std::shared_ptr<nn::Module> inverted_residual(const ModelOptions& o, SeedSequence& seeds, int64_t in, int64_t out,
                                              int64_t stride, int64_t expand) {
  auto body = std::make_shared<nn::Sequential>();
  const int64_t hidden = in * expand;
  if (expand != 1) add_conv_bn_act(*body, o, seeds, in, hidden, 1, 1, 1, true);
  add_conv_bn_act(*body, o, seeds, hidden, hidden, 3, stride, hidden, true);
  add_conv_bn_act(*body, o, seeds, hidden, out, 1, 1, 1, true, /*act=*/false);
  if (stride == 1 && in == out) return std::make_shared<nn::Residual>(body, nullptr, nullptr);
  auto plain = std::make_shared<nn::Sequential>();
  plain->add("body", body);
  return plain;
}

}  // namespace

std::shared_ptr<nn::Module> make_mobilenetv2(const ModelOptions& o) {
  SeedSequence seeds(o.seed);
  const bool imagenet = o.image_size >= 128;
  struct Stage { int64_t t, c, n, s; };
  const Stage stages[] = {{1, 16, 1, 1},  {6, 24, 2, imagenet ? 2 : 1}, {6, 32, 3, 2}, {6, 64, 4, 2},
                          {6, 96, 3, 1}, {6, 160, 3, 2},                {6, 320, 1, 1}};
  auto net = std::make_shared<nn::Sequential>();
  auto features = net->add(std::make_shared<nn::Sequential>());
  add_conv_bn_act(*features, o, seeds, o.in_channels, 32, 3, imagenet ? 2 : 1, 1, true);
  int64_t in = 32;
  for (const Stage& st : stages)
    for (int64_t i = 0; i < st.n; ++i) {
      features->add(inverted_residual(o, seeds, in, st.c, i == 0 ? st.s : 1, st.t));
      in = st.c;
    }
  add_conv_bn_act(*features, o, seeds, in, 1280, 1, 1, 1, true);
  net->add(std::make_shared<nn::GlobalAvgPool>());
  net->add(std::make_shared<nn::Linear>(1280, o.num_classes, true, seeds()));
  return net;
}

}  // namespace mdq::models

// Small builders the model files share: conv/BN/activation triples and a seed sequence.
#pragma once
#include <memory>

#include "engine/nn/activation.h"
#include "engine/nn/batchnorm.h"
#include "engine/nn/conv2d.h"
#include "engine/nn/functional.h"
#include "engine/nn/linear.h"
#include "engine/nn/module.h"
#include "engine/nn/pooling.h"
#include "engine/nn/reshape.h"
#include "engine/nn/residual.h"
#include "models/model_zoo.h"

namespace mdq::models {

// Hands out a distinct init seed per layer, in construction order.
class SeedSequence {
 public:
  explicit SeedSequence(uint64_t base) : next_(base * 1000003ull + 1) {}
  uint64_t operator()() { return next_++; }
 private:
  uint64_t next_;
};

// The hidden activation: ReLU (float activations), ReLU6 (MobileNetV2) or sign (act_bits = 1).
inline std::shared_ptr<nn::Module> activation(const ModelOptions& o, bool relu6 = false) {
  if (o.act_bits == 1) return std::make_shared<nn::SignSTE>();
  if (relu6) return std::make_shared<nn::ReLU6>();
  return std::make_shared<nn::ReLU>();
}

// conv (no bias) → BN → activation, the unit most of these networks repeat. A plain ReLU runs
// inside the BN's kernels (BatchNorm2d::fuse_relu: no pass of its own, forward or backward); a
// ReLU module stays in its place, so the names and the inference lowering see the same model.
inline void add_conv_bn_act(nn::Sequential& s, const ModelOptions& o, SeedSequence& seeds, int64_t in,
                            int64_t out, int64_t kernel, int64_t stride, int64_t groups = 1,
                            bool relu6 = false, bool act = true, bool conv_bias = false) {
  s.add(std::make_shared<nn::Conv2d>(in, out, kernel, stride, kernel / 2, groups, conv_bias, seeds()));
  auto bn = std::make_shared<nn::BatchNorm2d>(out, o.bn_affine);
  s.add(bn);
  if (!act) return;
  std::shared_ptr<nn::Module> a = activation(o, relu6);
  s.add(dynamic_cast<nn::ReLU*>(a.get()) ? nn::fuse_relu_after(*bn) : a);
}

std::shared_ptr<nn::Module> make_resnet18(const ModelOptions& o);
std::shared_ptr<nn::Module> make_vgg16(const ModelOptions& o);
std::shared_ptr<nn::Module> make_mobilenetv2(const ModelOptions& o);
std::shared_ptr<nn::Module> make_smallcnn(const ModelOptions& o);

}  // namespace mdq::models

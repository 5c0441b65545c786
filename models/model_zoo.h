// Builds a network by name: resnet18, vgg16, mobilenetv2 (each in a CIFAR-sized, 32×32 variant
// and an ImageNet-sized, 224×224 variant; resnet18 also at 64×64 for TinyImageNet) and
// smallcnn, a tiny net for CPU runs and tests. The variant follows the input size.
#pragma once
#include <memory>
#include <string>

#include "engine/nn/module.h"

namespace mdq::models {

struct ModelOptions {
  int num_classes = 10;
  int in_channels = 3;
  int image_size = 32;     // ≤ 32: CIFAR variant; 64: TinyImageNet (resnet18); ≥ 128: ImageNet variant
  bool bn_affine = false;  // the reference recipe: BatchNorm without affine parameters
  int act_bits = 32;       // 1: hidden activations are sign() with a straight-through backward
  uint64_t seed = 0;       // initialisation seed; every layer derives its own from it
};

std::shared_ptr<nn::Module> make_model(const std::string& name, const ModelOptions& options);
const char* supported_models();  // "resnet18, vgg16, mobilenetv2, smallcnn"

}  // namespace mdq::models

#include "models/random_rounded.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "engine/autograd.h"
#include "engine/nn/batchnorm.h"
#include "engine/nn/conv2d.h"
#include "engine/nn/linear.h"

namespace mdq::models {
namespace {

// A uniform(-1, 1) draw per element mapped to its level: ±1 by sign; {-1, 0, 1} by thirds.
Tensor random_levels(const Shape& shape, int levels, uint64_t seed) {
  Tensor t = Tensor::uniform(shape, -1.f, 1.f, seed, Device::CPU);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i)
    p[i] = levels == 3 ? (p[i] > 0.33f ? 1.f : p[i] < -0.33f ? -1.f : 0.f) : (p[i] >= 0.f ? 1.f : -1.f);
  return t;
}

void set_bn(nn::Module& m, int64_t& fan_in, uint64_t& seed) {
  if (auto* c = dynamic_cast<nn::Conv2d*>(&m)) fan_in = c->weight().value().numel() / c->weight().value().dim(0);
  if (auto* l = dynamic_cast<nn::Linear*>(&m)) fan_in = l->in_features();
  if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(&m)) {
    const int64_t C = bn->channels();
    const float f = static_cast<float>(std::max<int64_t>(fan_in, 1));
    Tensor var = Tensor::uniform({C}, 0.25f * f, f, seed++);
    Tensor mean = Tensor::uniform({C}, -0.5f * std::sqrt(f), 0.5f * std::sqrt(f), seed++);
    bn->running_var().copy_from(var.to(bn->running_var().device()));
    bn->running_mean().copy_from(mean.to(bn->running_mean().device()));
  }
  for (const auto& [name, child] : m.children()) set_bn(*child, fan_in, seed);
}

}  // namespace

void round_randomly(nn::Module& model, int levels, uint64_t seed) {
  MDQ_CHECK(levels == 2 || levels == 3, "round_randomly: levels must be 2 or 3, got " << levels);
  for (const nn::ParamRef& p : model.parameters()) {
    Var v = p.var;
    v.value().copy_from(random_levels(v.value().shape(), levels, seed++).to(v.value().device()));
  }
  int64_t fan_in = 1;
  set_bn(model, fan_in, seed);
  model.eval();
}

std::shared_ptr<nn::Module> rounded_model(const std::string& name, const ModelOptions& options, int levels,
                                          uint64_t seed) {
  auto model = make_model(name, options);
  round_randomly(*model, levels, seed);
  return model;
}

}  // namespace mdq::models

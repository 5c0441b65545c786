// Models: output shapes for every variant, published parameter counts, BN with its ReLU fused
// equal to BN then ReLU, and a few training steps of each model on tiny inputs reduce the loss.
#include "engine/nn/batchnorm.h"
#include "engine/nn/functional.h"
#include "engine/nn/loss.h"
#include "engine/ops/loss.h"
#include "engine/random.h"
#include "engine/quant/quantizer.h"
#include "models/model_zoo.h"
#include "tests/support/testing.h"

using namespace mdq;

namespace {

Shape output_shape(const std::string& name, models::ModelOptions o, int64_t batch) {
  auto m = models::make_model(name, o);
  m->eval();
  NoGradScope no_grad;
  Tensor x = testing::random_tensor({batch, o.in_channels, o.image_size, o.image_size}, 3);
  return m->forward(Var(x)).shape();
}

// The model as it was before BN fused its ReLU: every BatchNorm2d that applies one runs plain
// (same parameters and buffers) and the ReLU module after it runs nn::relu.
Var forward_unfused(nn::Module& m, const Var& x) {
  if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(&m); bn && bn->relu_fused())
    return nn::batch_norm(x, bn->weight(), bn->bias(), bn->running_mean(), bn->running_var(), bn->is_training(),
                          0.1f, bn->eps());
  if (dynamic_cast<nn::ReLUFusedIntoBatchNorm*>(&m)) return nn::relu(x);
  if (!dynamic_cast<nn::Sequential*>(&m)) return m.forward(x);
  Var y = x;
  for (const auto& [name, child] : m.children()) y = forward_unfused(*child, y);
  return y;
}

// Plain Adam: the float method of the Quantizer, the way mdq-train --method float trains.
quant::QuantConfig float_adam() {
  quant::QuantConfig cfg;
  cfg.method = "float";
  return cfg;
}

}  // namespace

TEST_CASE("every model variant maps images to class scores") {
  models::ModelOptions cifar;
  cifar.num_classes = 10;
  for (const char* name : {"resnet18", "vgg16", "mobilenetv2", "smallcnn"})
    REQUIRE(output_shape(name, cifar, 2) == Shape{2, 10});
  models::ModelOptions tiny;
  tiny.num_classes = 200;
  tiny.image_size = 64;
  REQUIRE(output_shape("resnet18", tiny, 1) == Shape{1, 200});
  models::ModelOptions gray;
  gray.in_channels = 1;
  gray.image_size = 28;
  REQUIRE(output_shape("resnet18", gray, 2) == Shape{2, 10});
}

TEST_CASE("BN with its ReLU fused (add_conv_bn_act) equals BN then ReLU: outputs, gradients, statistics, names") {
  for (bool affine : {false, true}) {
    INFO("bn_affine " << affine);
    models::ModelOptions o;
    o.in_channels = 1;
    o.image_size = 28;
    o.bn_affine = affine;
    auto fused = models::make_model("smallcnn", o), plain = models::make_model("smallcnn", o);
    // Fused: Conv, BN, the ReLU's stand-in, MaxPool, ... ; the names are the unfused layout's.
    const auto& layers = fused->children();
    int fusions = 0;
    for (size_t i = 0; i + 1 < layers.size(); ++i)
      if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(layers[i].second.get())) {
        REQUIRE(bn->relu_fused());
        REQUIRE(dynamic_cast<nn::ReLUFusedIntoBatchNorm*>(layers[i + 1].second.get()));
        REQUIRE(layers[i + 1].first == std::to_string(i + 1));
        ++fusions;
      }
    REQUIRE(fusions == 3);
    std::vector<std::string> names;
    for (const auto& p : fused->parameters()) names.push_back(p.name);
    for (const auto& [name, t] : fused->buffers()) names.push_back(name);
    std::vector<std::string> want = {"0.weight", "4.weight", "8.weight", "13.weight", "13.bias"};
    if (affine) want = {"0.weight", "1.weight", "1.bias", "4.weight", "5.weight", "5.bias", "8.weight", "9.weight",
                        "9.bias", "13.weight", "13.bias"};
    for (const char* b : {"1.running_mean", "1.running_var", "5.running_mean", "5.running_var", "9.running_mean",
                          "9.running_var"})
      want.push_back(b);
    std::sort(names.begin(), names.end());
    std::sort(want.begin(), want.end());
    REQUIRE(names == want);  // checkpoints written before the fusion load unchanged

    const Tensor x = testing::random_tensor({4, 1, 28, 28}, 71), g = testing::random_tensor({4, 10}, 72);
    auto pf = fused->parameters(), pp = plain->parameters();
    for (size_t k = 0; k < pf.size(); ++k) pf[k].var.set_requires_grad(true), pp[k].var.set_requires_grad(true);
    for (bool training : {true, false}) {
      INFO((training ? "training" : "eval"));
      if (training) fused->train(), plain->train();
      else fused->eval(), plain->eval();
      const Var xf(x.clone(), true), xp(x.clone(), true);
      const Var yf = fused->forward(xf);
      backward(nn::sum(nn::mul(yf, Var(g))));  // one graph at a time: backward clears the tape
      const Var yp = forward_unfused(*plain, xp);
      backward(nn::sum(nn::mul(yp, Var(g))));
      testing::require_close(yf.value(), yp.value(), 0.f, 0.f, "logits");  // the same float operations
      testing::require_close(xf.grad(), xp.grad(), 1e-6f, 1e-5f, "grad_input");
      for (size_t k = 0; k < pf.size(); ++k) {
        INFO(pf[k].name);
        testing::require_close(pf[k].var.grad(), pp[k].var.grad(), 1e-6f, 1e-5f, "grad");
        pf[k].var.zero_grad();
        pp[k].var.zero_grad();
      }
      const auto bf = fused->buffers(), bp = plain->buffers();
      for (size_t k = 0; k < bf.size(); ++k) REQUIRE(bf[k].second->to_vector() == bp[k].second->to_vector());
    }
  }
}

TEST_CASE("ImageNet variants: forward shape and the published parameter counts") {
  models::ModelOptions in;
  in.num_classes = 1000;
  in.image_size = 224;
  in.bn_affine = true;  // torchvision's counts include BatchNorm's affine parameters
  // torchvision: resnet18 11,689,512; vgg16_bn 138,365,992; mobilenet_v2 3,504,872.
  REQUIRE(models::make_model("resnet18", in)->parameter_count() == 11689512);
  REQUIRE(models::make_model("mobilenetv2", in)->parameter_count() == 3504872);
  REQUIRE(models::make_model("vgg16", in)->parameter_count() == 138365992);
  REQUIRE(output_shape("resnet18", in, 1) == Shape{1, 1000});
  REQUIRE(output_shape("mobilenetv2", in, 1) == Shape{1, 1000});
}

TEST_CASE("an unknown model is an error that lists the supported ones") {
  REQUIRE_THROWS_WITH(models::make_model("resnet50", {}), Catch::Contains("resnet18, vgg16, mobilenetv2"));
}

TEST_CASE("a few Adam steps of each model on a tiny batch reduce the loss") {
  for (const char* name : {"resnet18", "vgg16", "mobilenetv2", "smallcnn"}) {
    INFO(name);
    models::ModelOptions o;
    o.num_classes = 4;
    o.image_size = 32;
    auto m = models::make_model(name, o);
    quant::Quantizer adam(m->parameters(), float_adam());
    Tensor x = testing::random_tensor({4, 3, 32, 32}, 11);
    Tensor y = Tensor::from_vector_i32({0, 1, 2, 3}, {4});
    float first = 0, last = 0;
    for (int step = 0; step < 3; ++step) {
      Var loss = nn::cross_entropy(m->forward(Var(x)), y);
      if (step == 0) first = loss.value().item();
      last = loss.value().item();
      backward(loss);
      adam.step(1e-3f);
      adam.zero_grad();
    }
    REQUIRE(last < first);
  }
}

TEST_CASE("a small CNN learns a separable synthetic problem to 100% train accuracy") {
  // Class c = which quadrant of an 8×8 image holds a bright 4×4 square, over noise.
  const int64_t n = 64;
  std::vector<float> pixels(static_cast<size_t>(n * 64));
  std::vector<int32_t> labels(static_cast<size_t>(n));
  Rng rng(5);
  for (int64_t i = 0; i < n; ++i) {
    const int c = static_cast<int>(i % 4);
    labels[static_cast<size_t>(i)] = c;
    for (int64_t p = 0; p < 64; ++p) {
      const int64_t r = p / 8, k = p % 8;
      const bool inside = (r / 4 == c / 2) && (k / 4 == c % 2);
      pixels[static_cast<size_t>(i * 64 + p)] = (inside ? 1.5f : 0.f) + 0.5f * (rng.uniform() - 0.5f);
    }
  }
  Tensor x = Tensor::from_vector(pixels, {n, 1, 8, 8});
  Tensor y = Tensor::from_vector_i32(labels, {n});
  models::ModelOptions o;
  o.num_classes = 4;
  o.in_channels = 1;
  o.image_size = 8;
  auto m = models::make_model("smallcnn", o);
  quant::Quantizer adam(m->parameters(), float_adam());
  for (int step = 0; step < 60; ++step) {
    backward(nn::cross_entropy(m->forward(Var(x)), y));
    adam.step(1e-2f);
    adam.zero_grad();
  }
  m->eval();
  NoGradScope no_grad;
  REQUIRE(ops::count_topk_correct(m->forward(Var(x)).value(), y, 1) == n);
}

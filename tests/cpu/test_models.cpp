// Models: output shapes for every variant, published parameter counts, and a few training
// steps of each model on tiny inputs reduce the loss.
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

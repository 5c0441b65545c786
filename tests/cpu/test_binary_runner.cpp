// The W1A1 runner for fully binary nets (engine/infer/binary_runner.h) on the CPU, where the
// packed ops run their reference loops: the packed max pool and NCHW unpack against the float
// engine's ops, the integer sign thresholds against the float engine's BN, tiny act_bits = 1
// smallcnn / ResNet-18 / VGG-16 (random ±1 parameters, BN running statistics far from 0 and 1)
// against the float engine in eval mode, the mdq-infer chain, and the refusals.
// Tolerance: the float layers are the float engine's own ops on the same values and the W1A1
// layers are integer-exact with thresholds taken from the float engine's own BN, so the logits
// are equal, not close; the one place the arithmetic differs is the residual sum (folded BN:
// scale d + shift + skip vs (d - mean) invstd + skip), which can only matter by flipping a sign
// where |y| < ~1e-6. We ask |runner - float| <= 1e-6 max|logit| per row and the same top-1 on
// every row.
#include "apps/common/builders.h"
#include "apps/common/packed_model.h"
#include "data/dataset.h"
#include "engine/infer/binary_runner.h"
#include "engine/infer/packed_runner.h"
#include "engine/ops/batchnorm.h"
#include "engine/ops/pooling.h"
#include "engine/packed/binary_act.h"
#include "engine/packed/bitpack.h"
#include "tests/support/packed_nets.h"
#include "tests/support/testing.h"

using namespace mdq;

namespace {

constexpr double kLogitTol = 1e-6;

void check_equal_logits(infer::BinaryRunner& runner, nn::Module& model, const Tensor& x) {
  Tensor want = testing::float_logits(model, x);
  Tensor got = runner.logits(x);
  REQUIRE(got.shape() == want.shape());
  testing::LogitAgreement a = testing::compare_logits(got, want, 0.0);
  INFO("worst |diff| / max|logit| " << a.worst_rel_diff << " (row " << a.worst_row << "), top-1 agree "
                                     << a.top1_agree << "/" << a.rows << "; " << runner.summary());
  CHECK(a.worst_rel_diff <= kLogitTol);
  CHECK(a.top1_agree == a.rows);
}

void check_runner(const std::string& name, models::ModelOptions o, int64_t N, uint64_t seed,
                  const std::string& summary) {
  o.act_bits = 1;
  INFO(name << " act_bits 1, " << o.image_size << "x" << o.image_size << "x" << o.in_channels << " N " << N);
  auto model = testing::rounded_model(name, o, 2, seed);
  REQUIRE(infer::has_sign_activations(*model));
  std::string why;
  auto runner = infer::BinaryRunner::build(*model, Device::CPU, &why);
  INFO("refused: " << why);
  REQUIRE(runner);
  CHECK(runner->summary() == summary);
  check_equal_logits(*runner, *model, testing::random_tensor({N, o.in_channels, o.image_size, o.image_size}, seed + 999));
}

// Random bits for C channels: the signs of random values, packed.
Tensor random_bits(int64_t N, int64_t C, int64_t H, int64_t W, uint64_t seed) {
  return packed::pack_signs_nchw(testing::random_tensor({N, C, H, W}, seed));
}

}  // namespace

TEST_CASE("max_pool2d_bits is the float engine's max pool of the ±1 values; unpack_signs_nchw inverts the pack") {
  for (auto [k, s, p] : {std::tuple<int, int, int>{2, 2, 0}, {3, 2, 1}, {3, 1, 1}, {2, 1, 0}, {1, 1, 0}}) {
    for (int64_t C : {5, 32, 37, 64}) {
      const int64_t N = 2, H = 7, W = 6;
      INFO("k " << k << " s " << s << " p " << p << " C " << C);
      Tensor x = testing::random_tensor({N, C, H, W}, 3 + C + k);
      Tensor bits = packed::pack_signs_nchw(x);
      Tensor pm = x;  // the ±1 values
      for (int64_t i = 0; i < pm.numel(); ++i) pm.data<float>()[i] = x.data<float>()[i] >= 0.f ? 1.f : -1.f;
      testing::require_close(packed::unpack_signs_nchw(bits, C), pm, 0.f, 0.f, "unpack_signs_nchw");
      Tensor want = ops::max_pool2d_forward(pm, k, s, p).out;
      Tensor got = packed::max_pool2d_bits(bits, k, s, p);
      REQUIRE(got.shape() == Shape({N, want.dim(2), want.dim(3), packed::packed_words(C)}));
      testing::require_close(packed::unpack_signs_nchw(got, C), want, 0.f, 0.f, "max_pool2d_bits");
    }
  }
  CHECK_THROWS(packed::max_pool2d_bits(random_bits(1, 8, 4, 4, 1), 2, 2, 2));  // padding > kernel / 2
}

TEST_CASE("sign_thresholds_of: (d >= dmin) xor flip is the float engine's BN(d + bias) >= 0 for every d") {
  // 1x1 conv over C = 3 channels: |d| <= 3. Channels: gamma > 0, gamma < 0, gamma = 0 with beta
  // >= 0 and < 0 (constant signs), a mean on an exact integer (BN = 0 there: sign(0) = +1).
  const int64_t O = 5, C = 3, range = 3;
  packed::PackedWeights w = packed::pack_binary_weights(testing::random_signs({O, C, 1, 1}, 1));
  nn::BatchNorm2d bn(O, /*affine=*/true);
  bn.running_mean().copy_from(Tensor::from_vector({0.3f, -1.2f, 0.f, 0.f, 1.f}, {O}));
  bn.running_var().copy_from(Tensor::from_vector({2.f, 0.5f, 1.f, 1.f, 3.f}, {O}));
  bn.weight().value().copy_from(Tensor::from_vector({1.5f, -0.7f, 0.f, 0.f, 2.f}, {O}));
  bn.bias().value().copy_from(Tensor::from_vector({0.1f, 0.2f, 0.5f, -0.5f, 0.f}, {O}));
  const Tensor bias = Tensor::from_vector({0.25f, -0.5f, 1.f, 1.f, 0.f}, {O});
  const Tensor t = infer::sign_thresholds_of(w, bias, &bn, Device::CPU);
  REQUIRE(t.shape() == Shape({2, O}));
  const int32_t* dmin = t.data<int32_t>();
  const int32_t* flip = dmin + O;
  for (int64_t d = -range; d <= range; ++d) {
    Tensor v = Tensor::empty({1, O});
    for (int64_t o = 0; o < O; ++o) v.data<float>()[o] = static_cast<float>(d) + bias.data<float>()[o];
    Tensor mean = bn.running_mean(), var = bn.running_var();
    const Tensor y = ops::batch_norm_forward(v, bn.weight().value(), bn.bias().value(), mean, var, false, 0.1f,
                                             bn.eps()).out;
    for (int64_t o = 0; o < O; ++o) {
      INFO("d " << d << " channel " << o << " BN " << y.data<float>()[o] << " dmin " << dmin[o] << " flip " << flip[o]);
      CHECK(((d >= dmin[o]) != (flip[o] != 0)) == (y.data<float>()[o] >= 0.f));
    }
  }
  CHECK(flip[0] == 0);  // upward
  CHECK(flip[1] == 1);  // downward
  CHECK(dmin[4] == 1);  // d = 1 gives BN exactly 0, which signs to +1
  // No BN: the sign of d + bias.
  const Tensor nb = infer::sign_thresholds_of(w, bias, nullptr, Device::CPU);
  CHECK(nb.data<int32_t>()[0] == 0);   // d + 0.25 >= 0 from d = 0
  CHECK(nb.data<int32_t>()[1] == 1);   // d - 0.5 >= 0 from d = 1
  CHECK(nb.data<int32_t>()[O] == 0);
}

TEST_CASE("BinaryRunner on the CPU equals the float engine: smallcnn, act_bits = 1") {
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 1, o.image_size = 28;  // Fashion-MNIST shape: 28 -> 14 -> 7 -> 3
  check_runner("smallcnn", o, 64, 11, "2 W1A1 convs, 1 W1A1 linear; float: 1 conv, 0 linears");
  o.in_channels = 3, o.image_size = 17;  // odd sizes: 17 -> 8 -> 4 -> 2
  check_runner("smallcnn", o, 16, 12, "2 W1A1 convs, 1 W1A1 linear; float: 1 conv, 0 linears");
}

TEST_CASE("BinaryRunner on the CPU equals the float engine: ResNet-18 (CIFAR variant), act_bits = 1") {
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 3, o.image_size = 8;  // CIFAR structure, small maps for the CPU
  check_runner("resnet18", o, 8, 21, "19 W1A1 convs (8 residual blocks); float: 1 conv, 1 linear");
}

TEST_CASE("BinaryRunner on the CPU equals the float engine: VGG-16 (conv bias, BN + sign on the classifier)") {
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 3, o.image_size = 32;  // the smallest size five max-pools allow
  check_runner("vgg16", o, 2, 31, "12 W1A1 convs, 3 W1A1 linears; float: 1 conv, 0 linears");
}

TEST_CASE("BinaryRunner falls back to the float engine's ops for layers W1A1 cannot take, and still equals it") {
  // smallcnn: 0 conv, 1 BN, 2 sign, 3 pool, 4 conv, ... 12 flatten, 13 linear. The second conv
  // (on ±1 input) and the classifier get float weights: both run on unpacked ±1 values.
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 1, o.image_size = 28, o.act_bits = 1;
  auto model = testing::rounded_model("smallcnn", o, 2, 51);
  uint64_t seed = 52;
  for (const nn::ParamRef& p : model->parameters())
    if (p.name == "4.weight" || p.name == "13.weight") {
      Var v = p.var;
      v.value().copy_from(testing::random_tensor(v.value().shape(), seed++));
    }
  std::string why;
  auto runner = infer::BinaryRunner::build(*model, Device::CPU, &why);
  INFO("refused: " << why);
  REQUIRE(runner);
  CHECK(runner->summary() == "1 W1A1 conv; float: 2 convs, 1 linear");
  check_equal_logits(*runner, *model, testing::random_tensor({16, 1, 28, 28}, 53));
}

TEST_CASE("mdq-infer's chain on a fully binary net: export, load_packed_model, BinaryRunner equals the float engine") {
  app::TrainOptions o;
  o.model = "smallcnn";
  o.dataset = "fashion-mnist";
  o.act_bits = 1;
  const data::DatasetInfo info = data::standard_info("fashion-mnist");
  auto rounded = app::build_model(o, info);
  testing::round_randomly(*rounded, 2, 41);
  const std::string path = "/tmp/mdq-test-binary-runner.mdqpack";
  app::save_packed_model(path, o, *rounded);
  auto model = app::build_model(app::read_packed_options(path), info);
  app::load_packed_model(path, *model);
  model->eval();
  std::string why;
  CHECK(!infer::PackedRunner::build(*model, Device::CPU, &why));  // the W1A16 runner refuses sign activations
  auto runner = infer::BinaryRunner::build(*model, Device::CPU, &why);
  INFO("refused: " << why);
  REQUIRE(runner);
  check_equal_logits(*runner, *rounded, testing::random_tensor({32, 1, 28, 28}, 42));
}

TEST_CASE("BinaryRunner refuses what it does not cover, naming the layer") {
  models::ModelOptions o;
  o.image_size = 32;
  std::string why;
  auto relu = testing::rounded_model("resnet18", o, 2, 5);  // float activations: the W1A16 runner's
  CHECK(!infer::has_sign_activations(*relu));
  CHECK(!infer::BinaryRunner::build(*relu, Device::CPU, &why));
  INFO(why);
  CHECK(why.find(".act is not a sign activation") != std::string::npos);
  o.act_bits = 1;
  auto mb = testing::rounded_model("mobilenetv2", o, 2, 6);
  CHECK(!infer::BinaryRunner::build(*mb, Device::CPU, &why));
  CHECK(why.find("does not know") != std::string::npos);
}

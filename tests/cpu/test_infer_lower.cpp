// The inference lowering (engine/infer/lower.h) on the CPU, where the packed ops run their
// reference loops: tiny rounded networks (random ±1 / {-1, 0, 1} parameters, BN running
// statistics far from 0 and 1) lowered and run against the float engine in eval mode, with the
// summary of what ran where: model-zoo nets with float activations (W1A16) and with sign
// activations (W1A1), float fallbacks inside both, one network that takes every path, the
// mdq-infer chain (export, load, lower), the refusals, and the checkpoint names of nn::Residual.
// Tolerances, per row relative to its max|logit|:
//   exact (W1A1 nets): the float layers are the float engine's own ops on the same values, W1A1
//     layers are integer-exact with thresholds taken from the float engine's own BN, and the
//     W1A16 classifier after them reads averages of ±1 over a power-of-two number of pixels,
//     which bf16 holds exactly: the logits are equal, not close. The one place the arithmetic
//     differs is the W1A1 residual sum (folded BN: scale d + shift + skip vs (d - mean) invstd
//     + skip), which can only matter by flipping a sign where |y| < ~1e-6. We ask <= 1e-6 and
//     the same top-1 on every row.
//   SplitBF16: each W1A16 layer's input is hi + lo, within 2^-16 of the f32 value, and all else
//     is f32: within kSplit.logit = 5e-5 (measured worst: 1.0e-5 on ResNet-18, 5-7e-6 on the
//     others), top-1 agreement >= 99%, no flip on a row whose float margin exceeds 0.1%;
//   BF16: activations are rounded to bf16 (relative error <= 2^-8) after every W1A16 layer:
//     3% (measured worst 0.2-1.2%), >= 99% top-1, no flip above a 5% margin.
#include "apps/common/builders.h"
#include "apps/common/packed_model.h"
#include "data/dataset.h"
#include "engine/infer/lower.h"
#include "engine/infer/steps.h"
#include "engine/packed/bitpack.h"
#include "tests/support/packed_nets.h"
#include "tests/support/stem_case.h"
#include "tests/support/testing.h"

using namespace mdq;
using infer::PackedPrecision;

namespace {

struct Tolerance {
  double logit, margin, agree;
};
// bf16 may flip a near tie (a reference margin under 0.05 of max|logit|), never a clear one: one
// such flip in 64 rows is allowed (seen on smallcnn once its 1-channel stem ran on the float
// conv), clear flips must stay 0.
constexpr Tolerance kExact{1e-6, 0.0, 1.0}, kSplit{5e-5, 1e-3, 0.99}, kBf16{0.03, 0.05, 0.98};

// Lowers model onto the CPU and checks its logits on x against the float engine's and its
// summary; returns the worst |plan - float| / max|logit|.
double check_plan(nn::Module& model, const Tensor& x, PackedPrecision prec, const Tolerance& tol,
                  const std::string& summary) {
  INFO("precision " << infer::packed_precision_name(prec));
  std::string why;
  auto plan = infer::lower(model, {Device::CPU, prec}, &why);
  INFO("refused: " << why);
  REQUIRE(plan);
  CHECK(plan->summary() == summary);
  CHECK(plan->options().precision == prec);
  const Tensor want = testing::float_logits(model, x);
  const Tensor got = plan->logits(x);
  REQUIRE(got.shape() == want.shape());
  REQUIRE(got.dtype() == DType::F32);
  const testing::LogitAgreement a = testing::compare_logits(got, want, tol.margin);
  INFO("worst |diff| / max|logit| " << a.worst_rel_diff << " (row " << a.worst_row << "), top-1 agree "
                                     << a.top1_agree << "/" << a.rows << ", clear flips " << a.clear_disagree
                                     << "; " << plan->summary());
  CHECK(a.worst_rel_diff <= tol.logit);
  CHECK(a.agree_frac() >= tol.agree);
  CHECK(a.clear_disagree == 0);
  return a.worst_rel_diff;
}

Tensor images(const models::ModelOptions& o, int64_t N, uint64_t seed) {
  return testing::random_tensor({N, o.in_channels, o.image_size, o.image_size}, seed);
}

// Both precisions on one net with float activations; split must be the tighter one (reported,
// not bounded).
void check_both(nn::Module& model, const Tensor& x, const std::string& summary, const std::string& what) {
  const double split = check_plan(model, x, PackedPrecision::SplitBF16, kSplit, summary);
  const double bf16 = check_plan(model, x, PackedPrecision::BF16, kBf16, summary);
  WARN(what << ": worst |plan - float| / max|logit|: split-bf16 " << split << ", bf16 " << bf16);
  CHECK(split < bf16);
}

void check_w1a16(const std::string& name, models::ModelOptions o, int levels, int64_t N, uint64_t seed,
                 const std::string& summary) {
  INFO(name << " " << o.image_size << "x" << o.image_size << "x" << o.in_channels << " levels " << levels
            << " N " << N);
  auto model = testing::rounded_model(name, o, levels, seed);
  check_both(*model, images(o, N, seed + 999), summary, name + " levels " + std::to_string(levels));
}

// A net with sign activations (act_bits = 1), in both precisions: equal logits.
void check_w1a1(const std::string& name, models::ModelOptions o, int64_t N, uint64_t seed, const std::string& summary) {
  o.act_bits = 1;
  INFO(name << " act_bits 1, " << o.image_size << "x" << o.image_size << "x" << o.in_channels << " N " << N);
  auto model = testing::rounded_model(name, o, 2, seed);
  for (PackedPrecision p : {PackedPrecision::SplitBF16, PackedPrecision::BF16})
    check_plan(*model, images(o, N, seed + 999), p, kExact, summary);
}

void set_float_weights(nn::Module& model, const std::vector<std::string>& names, uint64_t seed) {
  for (const nn::ParamRef& p : model.parameters())
    for (const std::string& n : names)
      if (p.name == n) {
        Var v = p.var;
        v.value().copy_from(testing::random_tensor(v.value().shape(), seed++));
      }
}

}  // namespace

TEST_CASE("lower: smallcnn with float activations runs W1A16 and agrees with the float engine") {
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 1, o.image_size = 28;  // Fashion-MNIST shape: 28 -> 14 -> 7 -> 3
  check_w1a16("smallcnn", o, 2, 64, 11, "W1A16: 2 binary convs, 1 binary linear; float: 1 conv");
  o.in_channels = 3, o.image_size = 17;
  check_w1a16("smallcnn", o, 3, 16, 12, "W1A16: 2 ternary convs, 1 ternary linear; float: 1 conv");  // ternary, odd size
}

TEST_CASE("lower: ResNet-18 with float activations: W1A16, residual sums in NHWC") {
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 3, o.image_size = 8;  // CIFAR structure, small maps for the CPU
  check_w1a16("resnet18", o, 2, 8, 21, "W1A16: 19 binary convs, 1 binary linear; float: 1 conv");
  o.image_size = 128;  // ImageNet structure: the 7x7/2 stem on 3 channels and the padded 3x3/2 max pool
  check_w1a16("resnet18", o, 2, 2, 23, "W1A16: 19 binary convs, 1 binary linear; float: 1 conv");
}

TEST_CASE("lower: VGG-16 with float activations (conv bias, BN on the classifier): W1A16") {
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 3, o.image_size = 32;  // the smallest size five max-pools allow
  check_w1a16("vgg16", o, 2, 2, 31, "W1A16: 12 binary convs, 3 binary linears; float: 1 conv");
}

TEST_CASE("lower: smallcnn with sign activations runs W1A1 and equals the float engine") {
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 1, o.image_size = 28;
  check_w1a1("smallcnn", o, 64, 11, "W1A1: 2 convs, 1 linear; float: 1 conv");
  o.in_channels = 3, o.image_size = 17;  // odd sizes: 17 -> 8 -> 4 -> 2
  check_w1a1("smallcnn", o, 16, 12, "W1A1: 2 convs, 1 linear; float: 1 conv");
}

TEST_CASE("lower: ResNet-18 (CIFAR variant) with sign activations: W1A1 blocks, W1A16 classifier, float stem") {
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 3, o.image_size = 8;
  check_w1a1("resnet18", o, 8, 21, "W1A1: 19 convs (8 residual blocks); W1A16: 1 binary linear; float: 1 conv");
}

namespace {

std::unique_ptr<infer::Plan> lowered_with_bf16_stem(nn::Module& model, PackedPrecision prec) {
  infer::LowerOptions opt{Device::CPU, prec};
  opt.stem = infer::StemPath::Bf16;
  std::string why;
  auto plan = infer::lower(model, opt, &why);
  INFO("refused: " << why);
  REQUIRE(plan);
  return plan;
}

template <class T>
const T* step_as(const infer::Plan& plan, size_t i) {
  return i < plan.steps().size() ? dynamic_cast<const T*>(plan.steps()[i].get()) : nullptr;
}

}  // namespace

// LowerOptions::stem Bf16 on ImageNet ResNet-18's structure: the steps up to the first block
// (no layout change back to NCHW f32 between the images and it) and the logits, which carry the
// bf16 rounding of the stem's output (and with MDQ_STEM_DIRECT=0 of the images), so BF16's
// tolerances hold.
TEST_CASE("lower with bf16_stem: ResNet-18 (ImageNet structure), float activations: stem, max pool, blocks in NHWC") {
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 3, o.image_size = 128;
  auto model = testing::rounded_model("resnet18", o, 2, 23);
  const Tensor x = images(o, 2, 23 + 999);
  for (PackedPrecision prec : {PackedPrecision::BF16, PackedPrecision::SplitBF16}) {
    INFO("precision " << infer::packed_precision_name(prec));
    auto plan = lowered_with_bf16_stem(*model, prec);
    CHECK(plan->summary() == "W1A16: 19 binary convs, 1 binary linear; float: 1 conv");
    const auto* stem = step_as<infer::Bf16Stem>(*plan, 0);
    REQUIRE(stem);
    CHECK(stem->relu);  // conv, BN and ReLU in one step
    CHECK(stem->weight.shape() == Shape({64, 8, 7, 7}));  // input channels zero-padded to cuDNN's 8
    CHECK(stem->direct_weight.shape() == Shape({64, 3, 7, 7}));  // the direct kernel's: the layer's own
    CHECK(stem->direct());
    CHECK(stem->scale.defined());
    CHECK(stem->dense == (prec == PackedPrecision::BF16 ? DType::BF16 : DType::F32));
    const auto* pool = step_as<infer::MaxPool>(*plan, 1);
    REQUIRE(pool);
    CHECK(pool->form == infer::Form::Dense);
    CHECK(step_as<infer::ResidualSum>(*plan, 2));  // the first block, straight on the pooled NHWC map
    const testing::LogitAgreement a = testing::compare_logits(plan->logits(x), testing::float_logits(*model, x),
                                                              kBf16.margin);
    INFO("worst |diff| / max|logit| " << a.worst_rel_diff << ", top-1 agree " << a.top1_agree << "/" << a.rows);
    CHECK(a.worst_rel_diff <= kBf16.logit);
    CHECK(a.agree_frac() >= kBf16.agree);
    CHECK(a.clear_disagree == 0);
  }
}

// With sign activations the stem writes its signs as bits itself (Bf16Stem::signs: the direct
// kernel's f32 values, packed in the same pass) and they are max-pooled as bits. On ±1 images
// with ±1 weights the stem's sums are integers (exact in bf16 up to 256, here at most 147) and
// half-integer BN means keep every sign 0.5 away from its threshold, so the stem decides every
// sign as the float engine does: the logits are equal. Lowered with MDQ_STEM_DIRECT=0 the stem
// and Binarize are two steps again (the three passes' bf16 map, then its signs), with the same
// logits. (This test checked step 1 to be Binarize before the fusion.)
TEST_CASE("lower with bf16_stem: ResNet-18 (ImageNet structure), sign activations: the stem writes its signs") {
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 3, o.image_size = 128, o.act_bits = 1;
  auto model = testing::rounded_model("resnet18", o, 2, 22);
  testing::half_integer_means(*model);
  const Tensor x = testing::random_signs({2, 3, 128, 128}, 29);
  for (PackedPrecision prec : {PackedPrecision::SplitBF16, PackedPrecision::BF16}) {
    INFO("precision " << infer::packed_precision_name(prec));
    auto plan = lowered_with_bf16_stem(*model, prec);
    CHECK(plan->summary() == "W1A1: 19 convs (8 residual blocks); W1A16: 1 binary linear; float: 1 conv (1 writes its signs)");
    const auto* stem = step_as<infer::Bf16Stem>(*plan, 0);
    REQUIRE(stem);
    CHECK_FALSE(stem->relu);
    CHECK(stem->signs);
    CHECK(stem->direct());
    const auto* pool = step_as<infer::MaxPool>(*plan, 1);
    REQUIRE(pool);
    CHECK(pool->form == infer::Form::Bits);
    CHECK(step_as<infer::BinaryBlock>(*plan, 2));
    const Tensor fused = plan->logits(x);
    const testing::LogitAgreement a = testing::compare_logits(fused, testing::float_logits(*model, x), 0.0);
    INFO("worst |diff| / max|logit| " << a.worst_rel_diff << ", top-1 agree " << a.top1_agree << "/" << a.rows);
    CHECK(a.worst_rel_diff <= kExact.logit);
    CHECK(a.top1_agree == a.rows);

    std::unique_ptr<infer::Plan> apart;
    {
      const testing::StemDirectEnv off("0");
      apart = lowered_with_bf16_stem(*model, prec);
      CHECK(testing::bits(plan->logits(x)) == testing::bits(fused));  // the fused step's own fallback: three passes, then the signs
    }
    CHECK(apart->summary() == "W1A1: 19 convs (8 residual blocks); W1A16: 1 binary linear; float: 1 conv");
    REQUIRE(apart->steps().size() == plan->steps().size() + 1);
    const auto* stem_apart = step_as<infer::Bf16Stem>(*apart, 0);
    REQUIRE(stem_apart);
    CHECK_FALSE(stem_apart->signs);
    const auto* sign = step_as<infer::Binarize>(*apart, 1);
    REQUIRE(sign);
    CHECK(sign->form == infer::Form::Dense);
    CHECK(step_as<infer::MaxPool>(*apart, 2));
    CHECK(testing::bits(apart->logits(x)) == testing::bits(fused));  // run now with the direct kernel, then Binarize
    const testing::StemDirectEnv off("0");
    CHECK(testing::bits(apart->logits(x)) == testing::bits(fused));  // the three passes, then Binarize
  }
}

// The stem's sums of real images: the fused step packs the signs of exactly the f32 values the
// unfused direct step hands Binarize in SplitBF16 (f32 Dense), so the logits are equal on any
// images, near-ties included. The CIFAR variant: a 3x3/1 stem, 64 filters, an odd size.
TEST_CASE("lower with bf16_stem: sign activations, real images: the fused stem equals the stem and Binarize apart") {
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 3, o.image_size = 13, o.act_bits = 1;
  auto model = testing::rounded_model("resnet18", o, 2, 24);
  const Tensor x = images(o, 3, 25);
  auto fused = lowered_with_bf16_stem(*model, PackedPrecision::SplitBF16);
  REQUIRE(step_as<infer::Bf16Stem>(*fused, 0));
  CHECK(step_as<infer::Bf16Stem>(*fused, 0)->signs);
  std::unique_ptr<infer::Plan> apart;
  {
    const testing::StemDirectEnv off("0");
    apart = lowered_with_bf16_stem(*model, PackedPrecision::SplitBF16);
  }
  REQUIRE(step_as<infer::Binarize>(*apart, 1));
  CHECK(testing::bits(fused->logits(x)) == testing::bits(apart->logits(x)));
}

// Only the layer that reads the images takes the bf16 path; the others are lowered as before.
TEST_CASE("lower with bf16_stem: only the first layer changes") {
  auto net = testing::mixed_net(71);
  testing::round_randomly(*net, 2, 72);
  testing::float_weights_in_mixed_net(*net, 73);
  testing::ternary_shortcut_in_mixed_net(*net, 74);
  auto plain = infer::lower(*net, {Device::CPU, PackedPrecision::BF16}, nullptr);
  auto stem = lowered_with_bf16_stem(*net, PackedPrecision::BF16);
  REQUIRE(plain);
  CHECK(stem->summary() == testing::kMixedNetSummary);
  CHECK(step_as<infer::Bf16Stem>(*stem, 0));
  CHECK(step_as<infer::FloatConv>(*plain, 0));
  int64_t stems = 0;
  for (const auto& s : stem->steps()) stems += dynamic_cast<const infer::Bf16Stem*>(s.get()) != nullptr;
  CHECK(stems == 1);
  CHECK(stem->steps().size() == plain->steps().size() - 1);  // FloatConv + FloatBatchNorm became one step
}

// StemPath::Direct (mdq-infer's default) takes the Bf16Stem step only where the direct kernel takes
// the stem: ResNet-18's 7x7/2 stem on 3 channels, not on 5 (more than it keeps in shared memory),
// nor with MDQ_STEM_DIRECT=0; there the float engine's conv runs, as with StemPath::Float.
TEST_CASE("lower with StemPath::Direct: the direct stem where its kernel takes the layer, else the float engine's") {
  auto plan_for = [](int64_t channels) {
    models::ModelOptions o;
    o.num_classes = 10, o.in_channels = channels, o.image_size = 64;
    auto model = testing::rounded_model("resnet18", o, 2, 26);
    infer::LowerOptions opt{Device::CPU, PackedPrecision::SplitBF16};
    opt.stem = infer::StemPath::Direct;
    auto plan = infer::lower(*model, opt, nullptr);
    REQUIRE(plan);
    return plan;
  };
  auto direct = plan_for(3);
  const auto* stem = step_as<infer::Bf16Stem>(*direct, 0);
  REQUIRE(stem);
  CHECK(stem->direct());
  CHECK(direct->census().stem_direct == 1);
  auto wide = plan_for(5);
  CHECK(step_as<infer::FloatConv>(*wide, 0));
  CHECK(wide->census().stem_direct == 0);
  const testing::StemDirectEnv off("0");
  CHECK(step_as<infer::FloatConv>(*plan_for(3), 0));
}

// StemPath::TensorCores and TensorCoresBf16 on the CPU (no tensor cores): exactly Direct. The
// same steps, the same census (a direct stem, none on tensor cores; the sign fused in W1A1 plans),
// the same logits bit for bit, on ResNet-18's 7x7/2 stem with float (both precisions) and sign
// activations; the step keeps the arithmetic it would take on a GPU.
TEST_CASE("lower with StemPath::TensorCores / TensorCoresBf16 on the CPU: exactly StemPath::Direct") {
  const std::pair<infer::StemPath, packed::StemArithmetic> paths[] = {
      {infer::StemPath::TensorCores, packed::StemArithmetic::SplitBf16TensorCores},
      {infer::StemPath::TensorCoresBf16, packed::StemArithmetic::Bf16TensorCores}};
  for (const auto& [path, arithmetic] : paths) {
    for (int act_bits : {32, 1})
      for (PackedPrecision prec : {PackedPrecision::SplitBF16, PackedPrecision::BF16}) {
        INFO("stem path " << int(path) << ", act_bits " << act_bits << ", precision "
                          << infer::packed_precision_name(prec));
        models::ModelOptions o;
        o.num_classes = 10, o.in_channels = 3, o.image_size = 64, o.act_bits = act_bits;
        auto model = testing::rounded_model("resnet18", o, 2, 27);
        auto plan_with = [&](infer::StemPath stem_path) {
          infer::LowerOptions opt{Device::CPU, prec};
          opt.stem = stem_path;
          auto plan = infer::lower(*model, opt, nullptr);
          REQUIRE(plan);
          return plan;
        };
        auto direct = plan_with(infer::StemPath::Direct), tc = plan_with(path);
        const auto* stem = step_as<infer::Bf16Stem>(*tc, 0);
        REQUIRE(stem);
        CHECK(stem->arithmetic == arithmetic);
        CHECK(stem->direct());
        CHECK_FALSE(stem->on_tensor_cores());
        CHECK(stem->signs == (act_bits == 1));
        const infer::Census a = direct->census(), b = tc->census();
        CHECK(b.text() == a.text());
        CHECK(b.stem_direct == 1);
        CHECK(b.stem_signs == a.stem_signs);
        CHECK(b.stem_tensor_cores == 0);
        CHECK(b.bytes == a.bytes);
        CHECK(tc->steps().size() == direct->steps().size());
        const Tensor x = images(o, 3, 28);
        CHECK(testing::bits(tc->logits(x)) == testing::bits(direct->logits(x)));
      }
  }
}

TEST_CASE("lower: VGG-16 with sign activations (conv bias, BN + sign on the classifier): W1A1") {
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 3, o.image_size = 32;
  check_w1a1("vgg16", o, 2, 31, "W1A1: 12 convs, 3 linears; float: 1 conv");
}

TEST_CASE("lower: layers of ±1 input that W1A1 cannot take run on the float engine, still equal to it") {
  // smallcnn: 0 conv, 1 BN, 2 sign, 3 pool, 4 conv, ... 12 flatten, 13 linear. The second conv
  // (on ±1 input) and the classifier get float weights: both run on unpacked ±1 values.
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 1, o.image_size = 28, o.act_bits = 1;
  auto model = testing::rounded_model("smallcnn", o, 2, 51);
  set_float_weights(*model, {"4.weight", "13.weight"}, 52);
  check_plan(*model, images(o, 16, 53), PackedPrecision::SplitBF16, kExact, "W1A1: 1 conv; float: 2 convs, 1 linear");
}

TEST_CASE("lower: a float-weight layer between W1A16 layers runs on the float engine") {
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 1, o.image_size = 28;
  auto model = testing::rounded_model("smallcnn", o, 2, 61);
  set_float_weights(*model, {"4.weight"}, 62);
  check_both(*model, images(o, 32, 63), "W1A16: 1 binary conv, 1 binary linear; float: 2 convs",
             "smallcnn, float conv 4");
}

TEST_CASE("lower: float, W1A16 and W1A1 layers in one network agree with the float engine") {
  auto net = testing::mixed_net(71);
  testing::round_randomly(*net, 2, 72);
  testing::float_weights_in_mixed_net(*net, 73);
  testing::ternary_shortcut_in_mixed_net(*net, 74);
  check_both(*net, testing::random_tensor({16, 3, 16, 16}, 75), testing::kMixedNetSummary, "mixed net");
}

TEST_CASE("lower: MobileNetV2 runs its depthwise convs and ReLU6 on the float engine") {
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 3, o.image_size = 8;  // CIFAR variant: 8 -> 1 at the end
  auto relu6 = testing::rounded_model("mobilenetv2", o, 2, 81);
  const std::string summary = "W1A16: 34 binary convs, 1 binary linear; float: 18 convs";
  const Tensor x = images(o, 4, 82);
  check_plan(*relu6, x, PackedPrecision::SplitBF16, kSplit, summary);
  // 35 W1A16 layers in a chain, each rounding its output to bf16: measured 2.5%, bound 6%.
  check_plan(*relu6, x, PackedPrecision::BF16, {0.06, 0.1, 0.99}, summary);
  // With sign activations no conv takes W1A1: the linear bottlenecks have no sign after them and
  // the depthwise convs are grouped; only the classifier, on averages of ±1, runs packed.
  o.act_bits = 1;
  auto sign = testing::rounded_model("mobilenetv2", o, 2, 83);
  check_plan(*sign, images(o, 4, 84), PackedPrecision::SplitBF16, kExact, "W1A16: 1 binary linear; float: 52 convs");
}

TEST_CASE("mdq-infer's chain: export, load_packed_model, lower equals the float engine (float and sign activations)") {
  const data::DatasetInfo info = data::standard_info("fashion-mnist");
  for (int act_bits : {32, 1}) {
    INFO("act_bits " << act_bits);
    app::TrainOptions o;
    o.model = "smallcnn";
    o.dataset = "fashion-mnist";
    o.act_bits = act_bits;
    auto rounded = app::build_model(o, info);
    testing::round_randomly(*rounded, 2, 41);
    const std::string path = "/tmp/mdq-test-infer-lower-" + std::to_string(act_bits) + ".mdqpack";
    app::save_packed_model(path, o, *rounded);
    auto model = app::build_model(app::read_packed_options(path), info);
    app::load_packed_model(path, *model);
    model->eval();
    std::string why;
    auto plan = infer::lower(*model, {}, &why);  // the defaults: CPU, split-bf16
    INFO("refused: " << why);
    REQUIRE(plan);
    CHECK(plan->options().precision == PackedPrecision::SplitBF16);
    CHECK(plan->summary() == (act_bits == 1 ? "W1A1: 2 convs, 1 linear; float: 1 conv"
                                            : "W1A16: 2 binary convs, 1 binary linear; float: 1 conv"));
    CHECK(plan->census().bytes * 8 < model->parameter_count() * 4);  // packed: under 1/8 of the f32 weights
    const Tensor x = testing::random_tensor({32, 1, 28, 28}, 42);
    const Tolerance& tol = act_bits == 1 ? kExact : kSplit;
    const testing::LogitAgreement a =
        testing::compare_logits(plan->logits(x), testing::float_logits(*rounded, x), tol.margin);
    INFO("worst " << a.worst_rel_diff << " agree " << a.top1_agree << "/" << a.rows);
    CHECK(a.worst_rel_diff <= tol.logit);
    CHECK(a.agree_frac() >= tol.agree);
    CHECK(a.clear_disagree == 0);
  }
}

TEST_CASE("lower refuses what it cannot run packed, saying why") {
  models::ModelOptions o;
  std::string why;
  auto fl = models::make_model("smallcnn", o);  // Xavier init: float weights, nothing to pack
  CHECK(!infer::lower(*fl, {}, &why));
  CHECK(why.find("not all") != std::string::npos);
  nn::Sequential unknown;  // a layer it has no step for
  unknown.add(std::make_shared<nn::Conv2d>(3, 8, 3, 1, 1, 1, false, 1));
  unknown.add(std::make_shared<nn::AvgPool2d>(2, 2));
  testing::round_randomly(unknown, 2, 2);
  CHECK(!infer::lower(unknown, {}, &why));
  CHECK(why == "1 is a layer the inference lowering does not know");
  nn::Sequential lone;  // a BN that applies a ReLU with no ReLU module after it
  lone.add(std::make_shared<nn::Conv2d>(3, 8, 3, 1, 1, 1, false, 1));
  lone.add(std::make_shared<nn::BatchNorm2d>(8))->fuse_relu();
  testing::round_randomly(lone, 2, 2);
  CHECK(!infer::lower(lone, {}, &why));
  CHECK(why == "1 applies a ReLU (fuse_relu) but no ReLU module follows it");
  auto plan = infer::lower(*testing::rounded_model("smallcnn", o, 2, 3), {}, &why);
  REQUIRE(plan);
  CHECK_THROWS_WITH(plan->logits(Tensor::zeros({2, 3 * 32 * 32})), Catch::Contains("expects f32 NCHW images"));
}

TEST_CASE("nn::Residual keeps the blocks' parameter names (checkpoint keys) and order") {
  models::ModelOptions o;
  std::vector<std::string> names;
  for (const nn::ParamRef& p : models::make_model("resnet18", o)->parameters()) names.push_back(p.name);
  REQUIRE(names.size() == 22);  // 20 convs, the linear's weight and bias (BN without affine parameters)
  CHECK(names[0] == "0.0.weight");
  CHECK(names[1] == "1.0.body.0.weight");
  CHECK(names[2] == "1.0.body.3.weight");
  CHECK(names[7] == "2.0.shortcut.0.weight");
  CHECK(names[20] == "6.weight");
  CHECK(names[21] == "6.bias");
  o.bn_affine = true;
  names.clear();
  for (const nn::ParamRef& p : models::make_model("mobilenetv2", o)->parameters()) names.push_back(p.name);
  // features: 0 conv, 1 BN, 2 act, then the blocks: 3 (32 -> 16, no skip), 4 (16 -> 24, no skip),
  // 5 (24 -> 24, with the skip); each conv is followed by its BN's weight and bias.
  CHECK(names[3] == "0.3.body.0.weight");
  CHECK(names[4] == "0.3.body.1.weight");
  CHECK(names[9] == "0.4.body.0.weight");
  CHECK(names[18] == "0.5.body.0.weight");
}

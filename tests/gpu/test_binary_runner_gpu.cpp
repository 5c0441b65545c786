// The W1A1 runner for fully binary nets (engine/infer/binary_runner.h) on CUDA: its packed max
// pool and NCHW unpack kernels (kernels/binary_act.cu) against their CPU references, exactly, on
// odd sizes; the sign thresholds against the float engine's CUDA BatchNorm on every d; then tiny
// act_bits = 1 smallcnn / ResNet-18 / VGG-16 (random ±1 parameters) on CUDA
//  (1) against the runner's own CPU path (the packed ops' reference loops), on ±1 images with BN
//      running means on half-integers: every layer input is then an integer, so no sign sits
//      within 0.5 of its BN threshold and the stem's cuDNN rounding cannot move one: the logits
//      must be equal (<= 1e-6 of the row's max|logit|, the final float linear's order of sums)
//      with the same top-1 on every row;
//  (2) against the float engine on CUDA on real-valued images (the mdq-infer --agree check).
//      The float engine's cuDNN may pick Winograd/FFT algorithms, whose rounding makes its ±1
//      convolutions inexact (W1A1 is exact), so a sign at a near-tie may differ: we ask the same
//      top-1 on >= 99% of rows and print how many rows have equal logits.
#include <cmath>
#include <cstdio>
#include <sstream>
#include <tuple>

#include "engine/infer/binary_runner.h"
#include "engine/ops/batchnorm.h"
#include "engine/packed/binary_act.h"
#include "engine/packed/bitpack.h"
#include "tests/support/packed_nets.h"
#include "tests/support/testing.h"

using namespace mdq;

#ifdef MDQ_HAS_CUDA
namespace {

constexpr double kExactTol = 1e-6;

// BN running means moved to the nearest half-integer (integer inputs then never hit 0 exactly
// or within 0.5 of it after the subtraction).
void half_integer_means(nn::Module& m) {
  if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(&m)) {
    Tensor mean = bn->running_mean().cpu();
    for (int64_t c = 0; c < mean.numel(); ++c) mean.data<float>()[c] = std::floor(mean.data<float>()[c]) + 0.5f;
    bn->running_mean().copy_from(mean.to(bn->running_mean().device()));
  }
  for (const auto& [name, child] : m.children()) half_integer_means(*child);
}

void check_runner(const std::string& name, models::ModelOptions o, int64_t N, uint64_t seed) {
  o.act_bits = 1;
  std::ostringstream what;
  what << name << " act_bits 1, " << o.image_size << "x" << o.image_size << "x" << o.in_channels << " N " << N;
  INFO(what.str());
  auto model = testing::rounded_model(name, o, 2, seed);
  const Shape xs = {N, o.in_channels, o.image_size, o.image_size};
  std::string why;

  // (1) CUDA runner == CPU runner on a model whose every sign is far from its threshold.
  {
    auto robust = testing::rounded_model(name, o, 2, seed);
    half_integer_means(*robust);
    const Tensor x = testing::random_signs(xs, seed + 7);
    auto cpu = infer::BinaryRunner::build(*robust, Device::CPU, &why);
    INFO("refused on the CPU: " << why);
    REQUIRE(cpu);
    const Tensor want = cpu->logits(x);
    robust->to(Device::CUDA);
    auto gpu = infer::BinaryRunner::build(*robust, Device::CUDA, &why);
    INFO("refused on CUDA: " << why);
    REQUIRE(gpu);
    const Tensor got = gpu->logits(x.cuda());
    REQUIRE(got.is_cuda());
    REQUIRE(got.shape() == Shape({N, static_cast<int64_t>(o.num_classes)}));
    testing::LogitAgreement a = testing::compare_logits(got, want, 0.0);
    INFO("CUDA vs CPU runner: worst |diff| / max|logit| " << a.worst_rel_diff << " (row " << a.worst_row
                                                         << "), top-1 agree " << a.top1_agree << "/" << a.rows
                                                         << "; " << gpu->summary());
    CHECK(a.worst_rel_diff <= kExactTol);
    CHECK(a.top1_agree == a.rows);
  }

  // (2) CUDA runner vs the float engine on CUDA, real-valued images.
  model->to(Device::CUDA);
  auto runner = infer::BinaryRunner::build(*model, Device::CUDA, &why);
  INFO("refused on CUDA: " << why);
  REQUIRE(runner);
  const Tensor x = testing::random_tensor(xs, seed + 999).cuda();
  const Tensor want = testing::float_logits(*model, x);
  const Tensor got = runner->logits(x);
  testing::LogitAgreement a = testing::compare_logits(got, want, 0.0);
  const std::vector<float> g = got.cpu().to_vector(), w = want.to_vector();
  int64_t equal_rows = 0;
  for (int64_t n = 0; n < N; ++n) {
    bool eq = true;
    for (int64_t k = 0; k < o.num_classes; ++k) eq &= g[n * o.num_classes + k] == w[n * o.num_classes + k];
    equal_rows += eq;
  }
  std::printf("%s: CUDA runner vs float engine: top-1 agree %lld/%lld, equal logits on %lld rows, worst %.3g\n",
              what.str().c_str(), static_cast<long long>(a.top1_agree), static_cast<long long>(a.rows),
              static_cast<long long>(equal_rows), a.worst_rel_diff);
  INFO("CUDA runner vs float engine: top-1 agree " << a.top1_agree << "/" << a.rows << ", equal rows " << equal_rows
                                                  << ", worst " << a.worst_rel_diff << " (row " << a.worst_row << ")");
  CHECK(a.agree_frac() >= 0.99);
}

}  // namespace

TEST_CASE("max_pool2d_bits and unpack_signs_nchw on CUDA equal their CPU references") {
  for (auto [k, s, p] : {std::tuple<int, int, int>{2, 2, 0}, {3, 2, 1}, {3, 1, 1}, {1, 1, 0}}) {
    for (int64_t C : {5, 37, 64, 129}) {
      const int64_t N = 3, H = 13, W = 11;
      INFO("k " << k << " s " << s << " p " << p << " C " << C << " input " << N << "x" << H << "x" << W);
      const Tensor bits = packed::pack_signs_nchw(testing::random_tensor({N, C, H, W}, 5 + C + k + s));
      const Tensor want = packed::max_pool2d_bits(bits, k, s, p);
      const Tensor got = packed::max_pool2d_bits(bits.cuda(), k, s, p);
      REQUIRE(got.is_cuda());
      REQUIRE(got.shape() == want.shape());
      // u32 words compared as raw bits (to_vector_i32 wants an i32 tensor).
      auto words = [](const Tensor& t) {
        const Tensor c = t.cpu();
        const uint32_t* w = static_cast<const uint32_t*>(c.raw());
        return std::vector<uint32_t>(w, w + c.numel());
      };
      const std::vector<uint32_t> gv = words(got), wv = words(want);
      int64_t bad = 0, first = -1;
      for (size_t i = 0; i < gv.size(); ++i)
        if (gv[i] != wv[i] && bad++ == 0) first = static_cast<int64_t>(i);
      INFO("max_pool2d_bits: " << bad << " words differ, first at flat index " << first << " of " << want.describe());
      CHECK(bad == 0);
      testing::require_close(packed::unpack_signs_nchw(bits.cuda(), C).cpu(), packed::unpack_signs_nchw(bits, C), 0.f,
                             0.f, "unpack_signs_nchw");
    }
  }
}

TEST_CASE("sign_thresholds_of on CUDA follows the float engine's CUDA BatchNorm on every d") {
  const int64_t O = 40, C = 37;  // 3x3: |d| <= 333
  packed::PackedWeights w = packed::pack_binary_weights(testing::random_signs({O, C, 3, 3}, 1));
  nn::BatchNorm2d bn(O, /*affine=*/true);
  bn.running_mean().copy_from(testing::random_tensor({O}, 2, -20.f, 20.f));
  bn.running_var().copy_from(testing::random_tensor({O}, 3, 10.f, 300.f));
  bn.weight().value().copy_from(testing::random_tensor({O}, 4, -2.f, 2.f));
  bn.bias().value().copy_from(testing::random_tensor({O}, 5, -1.f, 1.f));
  const Tensor bias = testing::random_tensor({O}, 6);
  bn.to(Device::CUDA);
  const Tensor t = infer::sign_thresholds_of(w, bias, &bn, Device::CUDA);
  REQUIRE(t.is_cuda());
  const std::vector<int32_t> tv = t.to_vector_i32();
  const int64_t range = 9 * C, R = 2 * range + 1;
  Tensor v = Tensor::empty({R, O});  // [N][C]: row j holds d = j - range for every channel
  for (int64_t j = 0; j < R; ++j)
    for (int64_t o = 0; o < O; ++o) v.data<float>()[j * O + o] = static_cast<float>(j - range) + bias.data<float>()[o];
  Tensor mean = bn.running_mean(), var = bn.running_var();
  const std::vector<float> y =
      ops::batch_norm_forward(v.cuda(), bn.weight().value(), bn.bias().value(), mean, var, false, 0.1f, bn.eps())
          .out.to_vector();
  int64_t bad = 0;
  for (int64_t j = 0; j < R; ++j)
    for (int64_t o = 0; o < O; ++o) {
      const bool want = y[j * O + o] >= 0.f, got = (j - range >= tv[o]) != (tv[O + o] != 0);
      if (want != got && bad++ < 5)
        UNSCOPED_INFO("d " << j - range << " channel " << o << ": BN " << y[j * O + o] << ", dmin " << tv[o]
                           << " flip " << tv[O + o]);
    }
  CHECK(bad == 0);
}

TEST_CASE("BinaryRunner on CUDA: smallcnn, act_bits = 1") {
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 1, o.image_size = 28;
  check_runner("smallcnn", o, 256, 11);
  o.in_channels = 3, o.image_size = 17;
  check_runner("smallcnn", o, 64, 12);
}

TEST_CASE("BinaryRunner on CUDA: ResNet-18 (CIFAR and ImageNet variants), act_bits = 1") {
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 3, o.image_size = 32;
  check_runner("resnet18", o, 16, 21);
  o.image_size = 128;  // 7x7/2 stem and a 3x3/2 padded max pool of the stem's bits
  check_runner("resnet18", o, 2, 22);
}

TEST_CASE("BinaryRunner on CUDA: VGG-16, act_bits = 1") {
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 3, o.image_size = 32;
  check_runner("vgg16", o, 8, 31);
}

#else
TEST_CASE("binary runner GPU tests need a CUDA build") { SUCCEED("not a CUDA build"); }
#endif

// The packed inference runner on CUDA (engine/infer/packed_runner.h): first its layout and
// pooling kernels (kernels/nhwc_bf16.cu) against their CPU references, exactly, on odd sizes
// with poisoned outputs; then tiny rounded networks (random ±1 / {-1, 0, 1} parameters, BN
// running statistics far from 0 and 1) on the packed W1A16 kernels, in both precisions,
// against the float engine in eval mode (fp32, cuDNN without tensor cores) on the same batch,
// and against the runner's own CPU path.
// Tolerances, per row relative to its max|logit|; top-1 agreement >= 99% of rows in both:
//   SplitBF16: every layer's input is hi + lo (within 2^-16 of the f32 value) and all else is
//     f32, so |packed - float| <= 1e-4 (the CPU test measures ~1e-5; the rest is headroom for
//     f32 accumulation order and cuDNN's algorithms), no flip on a float margin above 0.1%;
//     GPU runner vs CPU runner 5e-5.
//   BF16: activations are rounded to bf16 (relative error <= 2^-8) after every layer:
//     |packed - float| <= 3%, no flip on a float margin above 5%; GPU runner vs CPU runner
//     (same roundings, f32 vs double accumulation) 1%.
#include <sstream>
#include <tuple>

#include "engine/infer/packed_runner.h"
#include "engine/packed/bitpack.h"
#include "tests/support/packed_nets.h"
#include "tests/support/testing.h"
#ifdef MDQ_HAS_CUDA
#include "kernels/nhwc_bf16.h"
#endif

using namespace mdq;

#ifdef MDQ_HAS_CUDA
namespace {

struct Tolerance {
  double logit, margin, cpu_gpu;
};
constexpr Tolerance kSplit{1e-4, 1e-3, 5e-5}, kBf16{0.03, 0.05, 0.01};

Tensor poisoned(const Shape& s, DType dt) {
  Tensor t = Tensor::empty(s, DType::F32);
  testing::poison(t);
  return (dt == DType::BF16 ? packed::to_bf16(t) : t).cuda();
}
Tensor as_f32(const Tensor& t) { return t.dtype() == DType::BF16 ? packed::to_f32(t.cpu()) : t.cpu(); }

// Returns the worst |packed - float| / max|logit| on CUDA.
double check_runner(const std::string& name, models::ModelOptions o, int levels, int64_t N, uint64_t seed,
                    int64_t cpu_rows, infer::PackedPrecision prec) {
  const Tolerance& tol = prec == infer::PackedPrecision::BF16 ? kBf16 : kSplit;
  std::ostringstream what;
  what << name << " " << o.image_size << "x" << o.image_size << "x" << o.in_channels << " levels " << levels << " N "
       << N << " precision " << infer::packed_precision_name(prec);
  INFO(what.str());
  auto model = testing::rounded_model(name, o, levels, seed);
  Tensor x = testing::random_tensor({N, o.in_channels, o.image_size, o.image_size}, seed + 999);

  // The runner's CPU path (built from the CPU model, before moving it) checks the first rows.
  std::string why;
  auto cpu_runner = infer::PackedRunner::build(*model, Device::CPU, &why, prec);
  INFO("refused on the CPU: " << why);
  REQUIRE(cpu_runner);

  model->to(Device::CUDA);
  auto runner = infer::PackedRunner::build(*model, Device::CUDA, &why, prec);
  INFO("refused on CUDA: " << why);
  REQUIRE(runner);
  Tensor xg = x.cuda();
  Tensor want = testing::float_logits(*model, xg);
  Tensor got = runner->logits(xg);
  REQUIRE(got.is_cuda());
  REQUIRE(got.dtype() == DType::F32);
  REQUIRE(got.shape() == Shape({N, static_cast<int64_t>(o.num_classes)}));
  testing::LogitAgreement a = testing::compare_logits(got, want, tol.margin);
  INFO("packed vs float: worst |diff| / max|logit| " << a.worst_rel_diff << " (row " << a.worst_row << "), top-1 agree "
                                                     << a.top1_agree << "/" << a.rows << ", clear flips "
                                                     << a.clear_disagree << "; " << runner->summary());
  CHECK(a.worst_rel_diff <= tol.logit);
  CHECK(a.agree_frac() >= 0.99);
  CHECK(a.clear_disagree == 0);

  // Same roundings on both sides: only the accumulation order differs.
  const int64_t per_row = o.in_channels * o.image_size * o.image_size;
  std::vector<float> xs = x.to_vector();
  xs.resize(static_cast<size_t>(cpu_rows * per_row));
  Tensor got_cpu = cpu_runner->logits(Tensor::from_vector(xs, {cpu_rows, o.in_channels, o.image_size, o.image_size}));
  std::vector<float> gs = got.cpu().to_vector();
  gs.resize(static_cast<size_t>(cpu_rows * o.num_classes));
  testing::LogitAgreement c =
      testing::compare_logits(Tensor::from_vector(gs, {cpu_rows, o.num_classes}), got_cpu, tol.margin);
  INFO("GPU runner vs CPU runner: worst " << c.worst_rel_diff << " (row " << c.worst_row << ")");
  CHECK(c.worst_rel_diff <= tol.cpu_gpu);
  return a.worst_rel_diff;
}

// Both precisions on one net; reports both (split must be the tighter one, by how much is not
// bounded here).
void check_both(const std::string& name, const models::ModelOptions& o, int levels, int64_t N, uint64_t seed,
                int64_t cpu_rows) {
  const double split = check_runner(name, o, levels, N, seed, cpu_rows, infer::PackedPrecision::SplitBF16);
  const double bf16 = check_runner(name, o, levels, N, seed, cpu_rows, infer::PackedPrecision::BF16);
  WARN(name << " " << o.image_size << "x" << o.image_size << " levels " << levels
            << " on CUDA: worst |packed - float| / max|logit|: split-bf16 " << split << ", bf16 " << bf16);
  CHECK(split < bf16);
}

}  // namespace

TEST_CASE("nchw_f32_to_nhwc_bf16 and nhwc_to_nchw_bf16 match the CPU exactly") {
  for (auto [N, C, HW] : {std::tuple<int64_t, int, int64_t>{1, 1, 1}, {2, 3, 35}, {3, 64, 49}, {5, 7, 1025}}) {
    std::ostringstream what;
    what << "N " << N << " C " << C << " HW " << HW;
    INFO(what.str());
    Tensor x = testing::random_tensor({N, C, HW}, 40 + N + C + HW, -3.f, 3.f);
    Tensor want = Tensor::empty({N, HW, C}, DType::BF16);
    kernels::reference::nchw_f32_to_nhwc_bf16(x.data<float>(), want.data<uint16_t>(), N, C, HW);
    Tensor xg = x.cuda(), y = poisoned({N, HW, C}, DType::BF16);
    kernels::nchw_f32_to_nhwc_bf16(xg.data<float>(), y.data<uint16_t>(), N, C, HW);
    testing::require_close(as_f32(y), as_f32(want), 0.f, 0.f, "to NHWC bf16 " + what.str());

    Tensor back_want = Tensor::empty({N, C, HW}, DType::BF16);
    kernels::reference::nhwc_to_nchw_bf16(want.data<uint16_t>(), back_want.data<uint16_t>(), N, HW, C);
    Tensor back = poisoned({N, C, HW}, DType::BF16);
    kernels::nhwc_to_nchw_bf16(y.data<uint16_t>(), back.data<uint16_t>(), N, HW, C);
    testing::require_close(as_f32(back), as_f32(back_want), 0.f, 0.f, "to NCHW " + what.str());

    // The f32 instantiations (split-bf16 runner): plain copies.
    Tensor want32 = Tensor::empty({N, HW, C});
    kernels::reference::nchw_f32_to_nhwc<float>(x.data<float>(), want32.data<float>(), N, C, HW);
    Tensor y32 = poisoned({N, HW, C}, DType::F32);
    kernels::nchw_f32_to_nhwc<float>(xg.data<float>(), y32.data<float>(), N, C, HW);
    testing::require_close(y32.cpu(), want32, 0.f, 0.f, "to NHWC f32 " + what.str());
    Tensor back32 = poisoned({N, C, HW}, DType::F32);
    kernels::nhwc_to_nchw<float>(y32.data<float>(), back32.data<float>(), N, HW, C);
    testing::require_close(back32.cpu(), x, 0.f, 0.f, "to NCHW f32 " + what.str());
  }
}

TEST_CASE("maxpool_nhwc_bf16 matches the CPU exactly") {
  struct Case { int N, H, W, C, k, s, p; };
  for (Case c : {Case{2, 28, 28, 16, 2, 2, 0}, Case{1, 7, 7, 64, 2, 2, 0}, Case{3, 9, 6, 5, 3, 2, 1},
                 Case{1, 1, 1, 3, 1, 1, 0}, Case{2, 15, 17, 33, 3, 1, 1}}) {
    std::ostringstream what;
    what << "N " << c.N << " H " << c.H << " W " << c.W << " C " << c.C << " k " << c.k << " s " << c.s << " p " << c.p;
    INFO(what.str());
    Tensor x = packed::to_bf16(testing::random_tensor({c.N, c.H, c.W, c.C}, 60 + c.H + c.C));
    const int OH = ops::window_output_size(c.H, c.k, c.s, c.p), OW = ops::window_output_size(c.W, c.k, c.s, c.p);
    Tensor want = Tensor::empty({c.N, OH, OW, c.C}, DType::BF16);
    kernels::reference::maxpool_nhwc_bf16(x.data<uint16_t>(), want.data<uint16_t>(), c.N, c.H, c.W, c.C, c.k, c.s, c.p);
    Tensor xg = x.cuda(), y = poisoned({c.N, OH, OW, c.C}, DType::BF16);
    kernels::maxpool_nhwc_bf16(xg.data<uint16_t>(), y.data<uint16_t>(), c.N, c.H, c.W, c.C, c.k, c.s, c.p);
    testing::require_close(as_f32(y), as_f32(want), 0.f, 0.f, what.str());
  }
}

TEST_CASE("PackedRunner on CUDA agrees with the float engine: smallcnn") {
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 1, o.image_size = 28;  // Fashion-MNIST
  check_both("smallcnn", o, 2, 256, 11, 16);
  o.in_channels = 3, o.image_size = 17;
  check_both("smallcnn", o, 3, 100, 12, 8);  // ternary weights, odd size
}

TEST_CASE("PackedRunner on CUDA agrees with the float engine: ResNet-18 (CIFAR variant)") {
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 3, o.image_size = 32;  // CIFAR-10
  check_both("resnet18", o, 2, 200, 21, 2);
  o.num_classes = 100, o.image_size = 16;
  check_both("resnet18", o, 3, 100, 22, 2);  // ternary, 100 classes
}

TEST_CASE("PackedRunner on CUDA agrees with the float engine: VGG-16 (CIFAR variant)") {
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 3, o.image_size = 32;
  check_both("vgg16", o, 2, 100, 31, 2);
}

#endif  // MDQ_HAS_CUDA

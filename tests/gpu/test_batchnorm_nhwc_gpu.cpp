// The NHWC bf16 BatchNorm kernels (kernels/batchnorm_nhwc.cu) against the f32 CPU reference,
// ops::batch_norm_forward / ops::batch_norm_backward on [rows, C] tensors of the bf16 inputs
// widened to f32 (exact), the CPU's f32 outputs then rounded to bf16 (kernels/batchnorm.h says
// this is the op's reference). Inputs are random and never zero, x = a_c + b_c u with per-channel
// centres a_c in ±[1, 3] and spreads b_c in [0.25, 2] (u uniform in [-1, 1]), so channels differ
// and |mean| exceeds the spread; shapes take the 16-byte path (C % 8 == 0), the scalar one (C = 3,
// 130; and C = 24 with every bf16 pointer 2 bytes off alignment), one to many row chunks, one to
// many channel slices; training and eval, ReLU on and off, weight and bias on and off, running
// statistics tracked (and once not). Outputs are poisoned with NaN first, so an unwritten element
// fails, and each training case runs twice: the same bits both times (deterministic sums, and
// the slices' tickets put back to zero). The backward gets the GPU forward's mean and invstd on
// both sides.
//
// Tolerances:
//  - mean, invstd, running statistics: 1e-5 relative + 1e-5 absolute (the op table's f32 BN
//    bound): f32 sums in another order against the CPU's double sums; eval's mean is
//    running_mean bit for bit and eval leaves the running statistics as they were.
//  - out and grad_in (bf16): within one bf16 ulp of the rounded reference, the ulp taken at
//    max(|ref|, floor_c). One ulp, because both sides round to bf16 from f32 values that differ in
//    the last f32 bits (the GPU computes pre as one fma and the sums in f32, the CPU in another
//    order and partly in double), so a value near a rounding boundary may round either way; an
//    ulp is 2^-7 relative at the bottom of a binade (8 significant bits), 2^-8 at the top, which is
//    why the bound is written as an ulp rather than as a relative tolerance. floor_c is 2^-4 of the
//    channel's scale (|w_c| + |b_c| for out, |w_c invstd_c| for grad_in, |g| <= 1): near zero an
//    absolute error of about 2^-11 of the scale, far above what the statistics' f32 differences
//    (~1e-5 relative of |mean| invstd) move pre by, which also covers outputs whose ReLU mask differs
//    because pre is within that much of 0 (the difference is then |pre| itself).
//  - the backward's ReLU mask: both sides recompute pre from the same x, mean and invstd, but by
//    different f32 expressions, so where |pre| is within 2^-20 of its terms' size the masks may
//    differ; grad_out is set to 0 there on both sides (then either mask gives 0). Those elements
//    are counted, and at most a handful (4 + 1 in 20000) are allowed.
//  - sum_g and sum_gxhat: 1e-4 of the channel's Σ|g'| and Σ|g' x̂| (f32 sums over the rows in
//    another order against the CPU's double sums).
#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "engine/ops/batchnorm.h"
#include "engine/packed/bitpack.h"
#include "tests/support/testing.h"
#ifdef MDQ_HAS_CUDA
#include "kernels/batchnorm.h"
#endif

using namespace mdq;

#ifdef MDQ_HAS_CUDA
namespace {

constexpr float kEps = 1e-5f, kMomentum = 0.1f;
const testing::Bound kStats{1e-5f, 1e-5f};

// One bf16 ulp at magnitude v > 0: 2^(e - 7) for v in [2^e, 2^(e + 1)).
double bf16_ulp(double v) {
  int e = 0;
  std::frexp(v, &e);  // v = f 2^e, f in [0.5, 1)
  return std::ldexp(1.0, e - 1 - 7);
}

// A CUDA bf16 [rows, C] buffer whose data start `offset` elements into its allocation (offset 1:
// 2 bytes off the 16-byte alignment, forcing the scalar path), filled with NaN or with `values`.
struct DeviceBf16 {
  Tensor buffer, view;
  DeviceBf16(int64_t rows, int64_t c, int64_t offset) {
    Tensor nan = Tensor::empty({rows * c + offset});
    testing::poison(nan);
    buffer = packed::to_bf16(nan).cuda();
    view = buffer.window(offset, {rows, c});
  }
  DeviceBf16(const Tensor& values, int64_t offset) : DeviceBf16(values.dim(0), values.dim(1), offset) {
    view.copy_from(values);
  }
  uint16_t* ptr() const { return view.data<uint16_t>(); }
  Tensor host() const { return view.cpu(); }
};

Tensor poisoned_f32(int64_t n) {
  Tensor t = Tensor::empty({n});
  testing::poison(t);
  return t.cuda();
}

const float* ptr_or_null(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }
float* mutable_ptr_or_null(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

// Every element of got (bf16 [rows, C]) within one bf16 ulp of ref (bf16) at max(|ref|, floor[c]).
void require_within_ulp(const Tensor& got16, const Tensor& ref16, const std::vector<double>& floor,
                        const std::string& what) {
  REQUIRE(got16.shape() == ref16.shape());
  const int64_t c = ref16.dim(1);
  const std::vector<float> got = packed::to_f32(got16.cpu()).to_vector(), ref = packed::to_f32(ref16).to_vector();
  int64_t bad = 0, worst_i = 0;
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], r = ref[i];
    double err = 0;
    if (std::isnan(g) || std::isnan(r))
      err = std::numeric_limits<double>::infinity();
    else if (g != r)
      err = std::fabs(g - r) / bf16_ulp(std::max(std::fabs(r), floor[i % static_cast<size_t>(c)]));
    if (err > 1) ++bad;
    if (err > worst) worst = err, worst_i = static_cast<int64_t>(i);
  }
  INFO(what << ": " << bad << " elements off by more than one bf16 ulp; worst " << worst << " ulp at row "
            << worst_i / c << ", channel " << worst_i % c << ": got " << got[worst_i] << ", expected "
            << ref[worst_i]);
  REQUIRE(bad == 0);
}

// |got - ref| <= 1e-4 * scale[c] + 1e-6 per channel.
void require_sums(const Tensor& got, const std::vector<double>& ref, const std::vector<double>& scale,
                  const std::string& what) {
  const std::vector<float> g = got.to_vector();
  REQUIRE(g.size() == ref.size());
  for (size_t c = 0; c < g.size(); ++c) {
    INFO(what << " channel " << c << ": got " << g[c] << ", expected " << ref[c] << ", sum of |terms| " << scale[c]);
    REQUIRE(std::fabs(g[c] - ref[c]) <= 1e-4 * scale[c] + 1e-6);
  }
}

void require_same_bits(const Tensor& a, const Tensor& b, const std::string& what) {
  INFO(what << ": a second run gave other bits");
  if (a.dtype() == DType::BF16) {
    const Tensor ha = a.cpu(), hb = b.cpu();
    REQUIRE(std::equal(ha.data<uint16_t>(), ha.data<uint16_t>() + ha.numel(), hb.data<uint16_t>()));
  } else {
    REQUIRE(testing::bits(a) == testing::bits(b));
  }
}

struct Case {
  int64_t rows, c;
  int64_t offset = 0;  // elements: 1 puts every bf16 pointer off the 16-byte alignment
};

void check_case(const Case& k, bool training, bool relu, bool affine) {
  const bool track = !(training && relu && !affine);  // once: training without running statistics
  std::ostringstream name;
  name << "rows " << k.rows << ", C " << k.c << (k.offset ? ", misaligned" : "") << (training ? ", training" : ", eval")
       << (relu ? ", relu" : "") << (affine ? ", affine" : "") << (track ? "" : ", untracked");
  INFO(name.str());
  const int64_t rows = k.rows, C = k.c, n = rows * C;
  const uint64_t seed = static_cast<uint64_t>(rows * 1009 + C * 31 + training * 8 + relu * 4 + affine * 2 + k.offset);

  // ---- inputs: x = a_c + b_c u in bf16, g in bf16, per-channel vectors f32
  const Tensor centre = testing::random_tensor({C}, seed + 1, 1.f, 3.f), sign = testing::random_signs({C}, seed + 2);
  const Tensor spread = testing::random_tensor({C}, seed + 3, 0.25f, 2.f);
  Tensor x32 = testing::random_tensor({rows, C}, seed + 4);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = i % C;
    x32.data<float>()[i] = centre.data<float>()[c] * sign.data<float>()[c] + spread.data<float>()[c] * x32.data<float>()[i];
  }
  const Tensor x16 = packed::to_bf16(x32);
  const Tensor x = packed::to_f32(x16);  // the values the GPU sees, exactly
  Tensor weight, bias;
  if (affine) {
    weight = testing::random_tensor({C}, seed + 5, 0.25f, 1.5f);
    const Tensor s = testing::random_signs({C}, seed + 6);
    for (int64_t c = 0; c < C; ++c) weight.data<float>()[c] *= s.data<float>()[c];
    bias = testing::random_tensor({C}, seed + 7, -0.5f, 0.5f);
  }
  Tensor run_mean = testing::random_tensor({C}, seed + 8), run_var = testing::random_tensor({C}, seed + 9, 0.5f, 2.f);

  // ---- forward, CPU reference
  Tensor rm_h, rv_h;
  if (track) rm_h = run_mean.clone(), rv_h = run_var.clone();
  const ops::BatchNormResult want = ops::batch_norm_forward(x, weight, bias, rm_h, rv_h, training, kMomentum, kEps, relu);

  // ---- forward, GPU (twice in training: the same bits)
  const DeviceBf16 x_d(x16, k.offset);
  const Tensor w_d = affine ? weight.cuda() : Tensor(), b_d = affine ? bias.cuda() : Tensor();
  struct Forward {
    DeviceBf16 out;
    Tensor mean, invstd, rm, rv;
  };
  auto forward = [&] {
    Forward f{DeviceBf16(rows, C, k.offset), poisoned_f32(C), poisoned_f32(C), Tensor(), Tensor()};
    if (track) f.rm = run_mean.cuda(), f.rv = run_var.cuda();
    kernels::BatchNormNhwcForwardArgs a{};
    a.rows = rows;
    a.c = C;
    a.training = training;
    a.momentum = kMomentum;
    a.eps = kEps;
    a.x = x_d.ptr();
    a.weight = ptr_or_null(w_d);
    a.bias = ptr_or_null(b_d);
    a.running_mean = mutable_ptr_or_null(f.rm);
    a.running_var = mutable_ptr_or_null(f.rv);
    a.out = f.out.ptr();
    a.mean = f.mean.data<float>();
    a.invstd = f.invstd.data<float>();
    a.relu = relu;
    kernels::batch_norm_forward_nhwc_bf16(a);
    return f;
  };
  const Forward got = forward();

  testing::require_close(got.mean.cpu(), want.mean, kStats, "mean");
  testing::require_close(got.invstd.cpu(), want.invstd, kStats, "invstd");
  if (!training) REQUIRE(testing::bits(got.mean) == testing::bits(run_mean));
  if (track) {
    testing::require_close(got.rm.cpu(), rm_h, kStats, "running_mean");
    testing::require_close(got.rv.cpu(), rv_h, kStats, "running_var");
    if (!training) {
      REQUIRE(testing::bits(got.rm) == testing::bits(run_mean));
      REQUIRE(testing::bits(got.rv) == testing::bits(run_var));
    }
  }
  std::vector<double> out_floor(static_cast<size_t>(C)), grad_floor(static_cast<size_t>(C));
  const std::vector<float> mean_g = got.mean.to_vector(), invstd_g = got.invstd.to_vector();
  for (int64_t c = 0; c < C; ++c) {
    const double w = affine ? std::fabs(weight.data<float>()[c]) : 1.0, b = affine ? std::fabs(bias.data<float>()[c]) : 0.0;
    out_floor[static_cast<size_t>(c)] = (w + b) / 16;
    grad_floor[static_cast<size_t>(c)] = w * invstd_g[static_cast<size_t>(c)] / 16;
  }
  require_within_ulp(got.out.host(), packed::to_bf16(want.out), out_floor, "out");
  if (training) {
    const Forward again = forward();
    require_same_bits(again.out.view, got.out.view, "out");
    require_same_bits(again.mean, got.mean, "mean");
    require_same_bits(again.invstd, got.invstd, "invstd");
    if (track) {
      require_same_bits(again.rm, got.rm, "running_mean");
      require_same_bits(again.rv, got.rv, "running_var");
    }
  }

  // ---- backward on the GPU forward's statistics, both sides
  const Tensor mean_h = got.mean.cpu(), invstd_h = got.invstd.cpu();
  Tensor g32 = testing::random_tensor({rows, C}, seed + 10);
  std::vector<double> ref_sg(static_cast<size_t>(C), 0.0), ref_sgx(static_cast<size_t>(C), 0.0);
  std::vector<double> abs_sg(static_cast<size_t>(C), 0.0), abs_sgx(static_cast<size_t>(C), 0.0);
  {
    Tensor g16 = packed::to_bf16(g32);
    g32 = packed::to_f32(g16);
    int64_t ambiguous = 0;
    for (int64_t i = 0; i < n; ++i) {
      const size_t c = static_cast<size_t>(i % C);
      const float xi = x.data<float>()[i], mu = mean_g[c], is = invstd_g[c];
      const float w = affine ? weight.data<float>()[c] : 1.f, b = affine ? bias.data<float>()[c] : 0.f;
      const float pre = ops::batch_norm_pre(xi, mu, is, w, b);
      float& g = g32.data<float>()[i];
      if (relu && std::fabs(pre) <= 0x1p-20f * (std::fabs((xi - mu) * is * w) + std::fabs(b))) {
        g = 0.f;  // either mask gives 0
        ++ambiguous;
      }
      if (relu && !(pre > 0.f)) continue;  // g' = 0
      const double xhat = static_cast<double>((xi - mu) * is);
      ref_sg[c] += g;
      ref_sgx[c] += g * xhat;
      abs_sg[c] += std::fabs(g);
      abs_sgx[c] += std::fabs(g * xhat);
    }
    INFO(ambiguous << " elements with pre within 2^-20 of 0");
    REQUIRE(ambiguous <= 4 + n / 20000);
  }
  const Tensor g16 = packed::to_bf16(g32);  // exact: g32 holds bf16 values and zeros
  const ops::BatchNormGrads want_b = ops::batch_norm_backward(g32, x, weight, bias, mean_h, invstd_h, training, relu);

  const DeviceBf16 g_d(g16, k.offset);
  const bool sums = training || affine;  // what ops::batch_norm_backward asks for
  auto backward = [&] {
    struct {
      DeviceBf16 grad_in;
      Tensor sum_g, sum_gxhat;
    } b{DeviceBf16(rows, C, k.offset), sums ? poisoned_f32(C) : Tensor(), sums ? poisoned_f32(C) : Tensor()};
    kernels::BatchNormNhwcBackwardArgs a{};
    a.rows = rows;
    a.c = C;
    a.training = training;
    a.grad_out = g_d.ptr();
    a.x = x_d.ptr();
    a.mean = got.mean.data<float>();
    a.invstd = got.invstd.data<float>();
    a.weight = ptr_or_null(w_d);
    a.bias = ptr_or_null(b_d);
    a.sum_g = mutable_ptr_or_null(b.sum_g);
    a.sum_gxhat = mutable_ptr_or_null(b.sum_gxhat);
    a.grad_in = b.grad_in.ptr();
    a.relu = relu;
    kernels::batch_norm_backward_nhwc_bf16(a);
    return b;
  };
  const auto got_b = backward();
  require_within_ulp(got_b.grad_in.host(), packed::to_bf16(want_b.grad_input), grad_floor, "grad_in");
  if (sums) {
    require_sums(got_b.sum_g, ref_sg, abs_sg, "sum_g");
    require_sums(got_b.sum_gxhat, ref_sgx, abs_sgx, "sum_gxhat");
    if (affine) {  // the op's own sums agree with the ones above
      require_sums(want_b.grad_bias, ref_sg, abs_sg, "CPU sum_g");
      require_sums(want_b.grad_weight, ref_sgx, abs_sgx, "CPU sum_gxhat");
    }
  }
  if (training) {
    const auto again = backward();
    require_same_bits(again.grad_in.view, got_b.grad_in.view, "grad_in");
    require_same_bits(again.sum_g, got_b.sum_g, "sum_g");
    require_same_bits(again.sum_gxhat, got_b.sum_gxhat, "sum_gxhat");
  }
}

}  // namespace

TEST_CASE("NHWC bf16 BatchNorm on the GPU matches the f32 CPU op, forward and backward") {
  const Case cases[] = {
      {32 * 32 * 32, 64},  // 128 row chunks (the most), 16-byte path
      {2 * 32 * 32, 64},    {3 * 5 * 7, 24},  {17, 8},   {4 * 4 * 4, 512},  // 8 channel slices
      {50, 200},                                                          // 4 slices, the last narrower
      {9, 3},               {1000, 130},                                  // scalar path (C % 8 != 0)
      {3 * 5 * 7, 24, 1},                                                 // scalar path (misaligned)
  };
  for (const Case& k : cases)
    for (bool training : {true, false})
      for (bool relu : {false, true})
        for (bool affine : {false, true}) check_case(k, training, relu, affine);
}
#endif  // MDQ_HAS_CUDA

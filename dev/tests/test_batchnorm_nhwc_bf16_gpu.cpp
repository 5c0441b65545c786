// The workshop's NHWC bf16 BatchNorm (dev/kernels/batchnorm_nhwc_bf16.cu) against its CPU
// reference on random inputs: channels a multiple of 32 and not (3, 40, 130), one row to tens of
// thousands (several row chunks), with and without the fused ReLU and residual sum.
// Tolerances: statistics 1e-5 relative (f32 sums in chunk order against double sums); bf16
// outputs one bf16 unit in the last place (2^-7 relative) plus 2^-9 absolute near zero; the
// backward is fed the GPU forward's output and statistics on both sides, and its residual
// gradient (g masked, no arithmetic) must be equal bit for bit.
#include <string>
#include <vector>

#include "common/bf16.h"
#include "dev/kernels/batchnorm_nhwc_bf16.h"
#include "tests/support/testing.h"

using namespace mdq;

namespace {

// Random bf16 values in [lo, hi), as a host tensor.
Tensor random_bf16(int64_t n, uint64_t seed, float lo, float hi) {
  const std::vector<float> v = testing::random_tensor({n}, seed, lo, hi).to_vector();
  Tensor t = Tensor::empty({n}, DType::BF16);
  for (int64_t i = 0; i < n; ++i) t.data<uint16_t>()[i] = float_to_bf16(v[static_cast<size_t>(i)]);
  return t;
}

Tensor as_f32(const Tensor& bf16) {
  const Tensor h = bf16.cpu();
  std::vector<float> v(static_cast<size_t>(h.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = bf16_to_float(h.data<uint16_t>()[i]);
  return Tensor::from_vector(v, {h.numel()});
}

const testing::Bound kBf16{1.f / 512, 1.f / 128};
const testing::Bound kStats{1e-6f, 1e-5f};

void check_case(int64_t rows, int64_t C, bool relu, bool residual) {
  INFO("rows " << rows << ", C " << C << (relu ? ", relu" : "") << (residual ? ", residual" : ""));
  const int64_t n = rows * C;
  const uint64_t seed = static_cast<uint64_t>(rows * 131 + C * 7 + relu * 3 + residual);
  const Tensor x = random_bf16(n, seed, -1.f, 3.f), r = random_bf16(n, seed + 1, -1.f, 1.f),
               g = random_bf16(n, seed + 2, -1.f, 1.f);
  const Tensor run_m = testing::random_tensor({C}, seed + 3), run_v = testing::random_tensor({C}, seed + 4, 0.5f, 2.f);

  // ---- forward, GPU
  Tensor xd = x.cuda(), rd = r.cuda(), gd = g.cuda();
  Tensor rmd = run_m.cuda(), rvd = run_v.cuda();
  Tensor mean_d = Tensor::empty({C}, DType::F32, Device::CUDA), invstd_d = Tensor::empty({C}, DType::F32, Device::CUDA);
  Tensor out_d = Tensor::empty({n}, DType::BF16, Device::CUDA);
  dev::BnNhwcForward f;
  f.rows = rows;
  f.c = C;
  f.x = xd.data<uint16_t>();
  f.residual = residual ? rd.data<uint16_t>() : nullptr;
  f.running_mean = rmd.data<float>();
  f.running_var = rvd.data<float>();
  f.mean = mean_d.data<float>();
  f.invstd = invstd_d.data<float>();
  f.relu = relu;
  f.out = out_d.data<uint16_t>();
  dev::bn_nhwc_bf16_forward(f);

  // ---- forward, CPU reference
  Tensor rmh = run_m.clone(), rvh = run_v.clone();
  Tensor mean_h = Tensor::empty({C}), invstd_h = Tensor::empty({C}), out_h = Tensor::empty({n}, DType::BF16);
  dev::BnNhwcForward fh = f;
  fh.x = x.data<uint16_t>();
  fh.residual = residual ? r.data<uint16_t>() : nullptr;
  fh.running_mean = rmh.data<float>();
  fh.running_var = rvh.data<float>();
  fh.mean = mean_h.data<float>();
  fh.invstd = invstd_h.data<float>();
  fh.out = out_h.data<uint16_t>();
  dev::bn_nhwc_bf16_forward_ref(fh);

  testing::require_close(mean_d, mean_h, kStats, "mean");
  testing::require_close(invstd_d, invstd_h, kStats, "invstd");
  testing::require_close(rmd, rmh, kStats, "running_mean");
  testing::require_close(rvd, rvh, kStats, "running_var");
  testing::require_close(as_f32(out_d), as_f32(out_h), kBf16, "out");

  // ---- backward on the GPU forward's output and statistics, both sides
  const Tensor out_g = out_d.cpu(), mean_g = mean_d.cpu(), invstd_g = invstd_d.cpu();
  Tensor sg_d = Tensor::empty({C}, DType::F32, Device::CUDA), sgx_d = Tensor::empty({C}, DType::F32, Device::CUDA);
  Tensor gin_d = Tensor::empty({n}, DType::BF16, Device::CUDA), gres_d = Tensor::empty({n}, DType::BF16, Device::CUDA);
  dev::BnNhwcBackward b;
  b.rows = rows;
  b.c = C;
  b.grad_out = gd.data<uint16_t>();
  b.x = xd.data<uint16_t>();
  b.out = out_d.data<uint16_t>();
  b.mean = mean_d.data<float>();
  b.invstd = invstd_d.data<float>();
  b.relu = relu;
  b.sum_g = sg_d.data<float>();
  b.sum_gxhat = sgx_d.data<float>();
  b.grad_in = gin_d.data<uint16_t>();
  b.grad_residual = residual ? gres_d.data<uint16_t>() : nullptr;
  dev::bn_nhwc_bf16_backward(b);

  Tensor sg_h = Tensor::empty({C}), sgx_h = Tensor::empty({C});
  Tensor gin_h = Tensor::empty({n}, DType::BF16), gres_h = Tensor::empty({n}, DType::BF16);
  dev::BnNhwcBackward bh = b;
  bh.grad_out = g.data<uint16_t>();
  bh.x = x.data<uint16_t>();
  bh.out = out_g.data<uint16_t>();
  bh.mean = mean_g.data<float>();
  bh.invstd = invstd_g.data<float>();
  bh.sum_g = sg_h.data<float>();
  bh.sum_gxhat = sgx_h.data<float>();
  bh.grad_in = gin_h.data<uint16_t>();
  bh.grad_residual = residual ? gres_h.data<uint16_t>() : nullptr;
  dev::bn_nhwc_bf16_backward_ref(bh);

  // Sums of ±1-sized terms over `rows` rows: relative to their scale, sqrt(rows)·|g|.
  const float sum_scale = std::sqrt(static_cast<float>(rows));
  testing::require_close(sg_d, sg_h, testing::Bound{1e-5f * sum_scale, 1e-5f}, "sum_g");
  testing::require_close(sgx_d, sgx_h, testing::Bound{1e-5f * sum_scale, 1e-5f}, "sum_gxhat");
  testing::require_close(as_f32(gin_d), as_f32(gin_h), kBf16, "grad_in");
  if (residual) {
    const Tensor a = gres_d.cpu();
    for (int64_t i = 0; i < n; ++i) REQUIRE(a.data<uint16_t>()[i] == gres_h.data<uint16_t>()[i]);
  }
}

}  // namespace

TEST_CASE("NHWC bf16 BatchNorm on the GPU matches its CPU reference") {
  const int64_t shapes[][2] = {{1, 3}, {7, 40}, {2 * 5 * 7, 64}, {3 * 9 * 9, 130}, {16 * 8 * 8, 256},
                               {128 * 16 * 16, 64}, {64 * 4 * 4, 512}};
  for (const auto& s : shapes)
    for (bool relu : {false, true})
      for (bool residual : {false, true}) check_case(s[0], s[1], relu, residual);
}

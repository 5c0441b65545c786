// The GEMM forms in which kernels/conv2d.cu runs NHWC bf16 convolutions on cuBLAS (bf16_route),
// on the CPU: the reference subsample, upsample_zero and im2col (kernels/nhwc_bf16.h) feeding
// row-major products taken with the same arguments as ConvAsGemm's cuBLAS calls give the
// convolution op's f32 output and gradients on the same bf16-exact values. This checks the
// routes' layouts (the strided pixels, the im2col column order against the weight's, the rows
// padded to K and dW cut back from them) where CI runs; tests/gpu/test_nhwc_path_gpu.cpp and
// test_infer_parts_gpu.cpp check the kernels and cuBLAS themselves.
#include <sstream>
#include <vector>

#include "common/bf16.h"
#include "engine/ops/conv2d.h"
#include "engine/ops/layout.h"
#include "kernels/nhwc_bf16.h"
#include "tests/support/testing.h"

using namespace mdq;

namespace {

// Row-major out [m][n] = op(a) [m][k] · op(b) [k][n], summed in double: gemm_bf16's arguments
// (kernels/conv2d.cu), where op(a) is a as stored, rows of lda, or with ta the transpose of an a
// stored [k][m] (rows of lda); likewise b.
std::vector<float> gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const std::vector<float>& a, int64_t lda,
                        const std::vector<float>& b, int64_t ldb) {
  std::vector<float> out(static_cast<size_t>(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t l = 0; l < k; ++l)
        s += double(ta ? a[l * lda + i] : a[i * lda + l]) * double(tb ? b[j * ldb + l] : b[l * ldb + j]);
      out[static_cast<size_t>(i * n + j)] = static_cast<float>(s);
    }
  return out;
}

std::vector<float> widened(const std::vector<uint16_t>& bits) {
  std::vector<float> v(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) v[i] = bf16_to_float(bits[i]);
  return v;
}
std::vector<uint16_t> rounded(const std::vector<float>& v) {
  std::vector<uint16_t> bits(v.size());
  for (size_t i = 0; i < v.size(); ++i) bits[i] = float_to_bf16(v[i]);
  return bits;
}

// An NCHW f32 tensor as the NHWC rows [N*H*W][C] the GEMMs read.
std::vector<float> nhwc_rows(const Tensor& t) {
  const int64_t N = t.dim(0), C = t.dim(1), HW = t.dim(2) * t.dim(3);
  std::vector<float> rows(static_cast<size_t>(t.numel()));
  kernels::reference::nchw_f32_to_nhwc<float>(t.data<float>(), rows.data(), N, static_cast<int>(C), HW);
  return rows;
}
std::vector<uint16_t> nhwc_bits(const Tensor& t) {
  const Tensor b = ops::to_nhwc_bf16(t);
  const uint16_t* p = b.data<uint16_t>();
  return std::vector<uint16_t>(p, p + b.numel());
}

Tensor bf16_exact(const Tensor& t) { return ops::to_nchw_f32(ops::to_nhwc_bf16(t)); }

void require_equal_sums(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  const Shape s{static_cast<int64_t>(want.size())};
  testing::require_close(Tensor::from_vector(got, s), Tensor::from_vector(want, s), testing::Bound{0, 1e-5f, 1e-5f},
                         what);
}

struct Conv {
  int64_t N, C, H, W, O, KH, KW, stride, pad;
  std::string name() const {
    std::ostringstream s;
    s << "x [" << N << ", " << C << ", " << H << ", " << W << "] w [" << O << ", " << C << ", " << KH << ", " << KW
      << "] stride " << stride << " padding " << pad;
    return s.str();
  }
};

// The convolution op's f32 answers on bf16-exact x, w and dy (NCHW, CPU).
struct Expected {
  Tensor x, w, dy, y, dx, dw;
};
Expected expected_for(const Conv& c, uint64_t seed) {
  Expected e;
  const ops::Conv2dParams p{c.stride, c.pad, 1};
  e.x = bf16_exact(testing::random_tensor({c.N, c.C, c.H, c.W}, seed, -2.f, 2.f));
  e.w = bf16_exact(testing::random_tensor({c.O, c.C, c.KH, c.KW}, seed + 1));
  e.y = ops::conv2d_forward(e.x, e.w, Tensor(), p);
  e.dy = bf16_exact(testing::random_tensor(e.y.shape(), seed + 2));
  const ops::Conv2dGrads g = ops::conv2d_backward(e.dy, e.x, e.w, p, true, true);
  e.dx = g.input;
  e.dw = g.weight;
  return e;
}

}  // namespace

TEST_CASE("1x1 convolutions as GEMMs on the pixels they read equal the convolution op") {
  for (const Conv& c : {Conv{2, 16, 9, 9, 32, 1, 1, 2, 0}, Conv{3, 32, 8, 8, 16, 1, 1, 2, 0},
                        Conv{2, 16, 5, 7, 24, 1, 1, 1, 0}, Conv{1, 8, 7, 10, 8, 1, 1, 3, 0}}) {
    INFO(c.name());
    const Expected e = expected_for(c, 40 + static_cast<uint64_t>(c.C + c.stride));
    const int64_t OH = e.y.dim(2), OW = e.y.dim(3), P = c.N * OH * OW;
    const int s = static_cast<int>(c.stride), H = static_cast<int>(c.H), W = static_cast<int>(c.W);
    const int C = static_cast<int>(c.C);
    // X [P][C]: the pixels at rows and columns 0, s, 2s, ...
    std::vector<uint16_t> x_bits(static_cast<size_t>(P * c.C));
    kernels::reference::subsample_nhwc_bf16(nhwc_bits(e.x).data(), x_bits.data(), c.N, H, W, C, s);
    const std::vector<float> X = widened(x_bits), Wm = e.w.to_vector(), dY = nhwc_rows(e.dy);

    // Y = X · W^T
    require_equal_sums(gemm(false, true, P, c.O, c.C, X, c.C, Wm, c.C), nhwc_rows(e.y), "forward");
    // dX = dY · W at the pixels read, 0 elsewhere (rounded to bf16, as on the GPU, before spreading)
    const std::vector<uint16_t> dxs = rounded(gemm(false, false, P, c.C, c.O, dY, c.O, Wm, c.C));
    std::vector<uint16_t> dx_bits(static_cast<size_t>(c.N * c.H * c.W * c.C));
    kernels::reference::upsample_zero_nhwc_bf16(dxs.data(), dx_bits.data(), c.N, H, W, C, s);
    const std::vector<float> want_dx = widened(rounded(nhwc_rows(e.dx)));
    const Shape dx_shape{static_cast<int64_t>(want_dx.size())};
    testing::require_close(Tensor::from_vector(widened(dx_bits), dx_shape), Tensor::from_vector(want_dx, dx_shape),
                           testing::Bound{0, 1.f / 128, 1.f / 128}, "input gradient");
    // dW = dY^T · X, [O][C]: the 1x1 weight's own layout
    require_equal_sums(gemm(true, false, c.O, c.C, P, dY, c.O, X, c.C), e.dw.to_vector(), "weight gradient");
  }
}

TEST_CASE("few-channel convolutions as GEMMs on an im2col equal the convolution op") {
  // The 3x3/1 and 7x7/2 3-channel stems, a non-square window, a 1x1/2 of 12 channels, 5 channels
  // 5x5/2: K = C*KH*KW padded to a multiple of 8 (27 -> 32, 147 -> 152, 18 -> 24, 12 -> 16,
  // 125 -> 128).
  for (const Conv& c : {Conv{2, 3, 8, 8, 16, 3, 3, 1, 1}, Conv{2, 3, 15, 15, 16, 7, 7, 2, 3},
                        Conv{2, 3, 7, 6, 8, 3, 2, 2, 1}, Conv{2, 12, 7, 7, 16, 1, 1, 2, 0},
                        Conv{1, 5, 9, 8, 8, 5, 5, 2, 2}}) {
    INFO(c.name());
    const Expected e = expected_for(c, 60 + static_cast<uint64_t>(c.C + c.KH + c.stride));
    const int64_t OH = e.y.dim(2), OW = e.y.dim(3), P = c.N * OH * OW;
    const int64_t row = c.C * c.KH * c.KW, K = (row + 7) / 8 * 8;
    // cols [P][K], and the weight [O][C*KH*KW] as stored with its rows zero-padded to K
    std::vector<uint16_t> col_bits(static_cast<size_t>(P * K));
    kernels::reference::im2col_nhwc_bf16(nhwc_bits(e.x).data(), col_bits.data(), c.N, static_cast<int>(c.H),
                                         static_cast<int>(c.W), static_cast<int>(c.C), static_cast<int>(c.KH),
                                         static_cast<int>(c.KW), static_cast<int>(c.stride), static_cast<int>(c.pad),
                                         static_cast<int>(K));
    const std::vector<float> cols = widened(col_bits), w = e.w.to_vector(), dY = nhwc_rows(e.dy);
    std::vector<float> Wk(static_cast<size_t>(c.O * K), 0.f);
    for (int64_t o = 0; o < c.O; ++o)
      for (int64_t j = 0; j < row; ++j) Wk[static_cast<size_t>(o * K + j)] = w[static_cast<size_t>(o * row + j)];

    // Y = cols · W^T
    require_equal_sums(gemm(false, true, P, c.O, K, cols, K, Wk, K), nhwc_rows(e.y), "forward");
    // dW = dY^T · cols, [O][K] cut to the weight's [O][C*KH*KW]
    const std::vector<float> dWk = gemm(true, false, c.O, K, P, dY, c.O, cols, K);
    std::vector<float> dw(static_cast<size_t>(c.O * row));
    for (int64_t o = 0; o < c.O; ++o)
      for (int64_t j = 0; j < row; ++j) dw[static_cast<size_t>(o * row + j)] = dWk[static_cast<size_t>(o * K + j)];
    require_equal_sums(dw, e.dw.to_vector(), "weight gradient");
    // The padded columns are zero in every row, so they add nothing to y and get a zero gradient.
    for (int64_t o = 0; o < c.O; ++o)
      for (int64_t j = row; j < K; ++j) CHECK(dWk[static_cast<size_t>(o * K + j)] == 0.f);
  }
}

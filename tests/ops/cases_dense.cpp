// Op table entries for the dense ops: matmul and matmul_into over every transpose, the row-wise
// bias ops, and the linear layer built from them (whose backward is where matmul's gradients
// live); with naive double references.
#include <cmath>
#include <sstream>

#include "engine/nn/linear.h"
#include "engine/ops/matmul.h"
#include "tests/ops/naive.h"
#include "tests/ops/op_table.h"
#include "tests/support/inputs.h"

namespace mdq::optest {
namespace {

enum class Into { No, Overwrite, Accumulate };

// op(a) op(b) (+ c) in double.
Tensor naive_matmul(const Tensor& a, const Tensor& b, bool ta, bool tb, const Tensor& c) {
  const int64_t M = ta ? a.dim(1) : a.dim(0), K = ta ? a.dim(0) : a.dim(1), N = tb ? b.dim(0) : b.dim(1);
  Tensor y = Tensor::zeros({M, N});
  const float *pa = a.data<float>(), *pb = b.data<float>();
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double acc = c.defined() ? c.data<float>()[i * N + j] : 0.0;
      for (int64_t k = 0; k < K; ++k)
        acc += double(ta ? pa[k * M + i] : pa[i * K + k]) * (tb ? pb[j * K + k] : pb[k * N + j]);
      y.data<float>()[i * N + j] = static_cast<float>(acc);
    }
  return y;
}

// x [N, C] + b [C] on every row.
Tensor add_rows(const Tensor& x, const Tensor& b) {
  const float* pb = b.data<float>();
  return naive_map(x, [pb, C = b.numel()](float v, int64_t i) { return v + pb[i % C]; });
}

// Inputs in [-1, 1): an output's rounding error grows like sqrt(K) times the operands' rounding
// unit: fp32 ~6e-8 (accumulation only), tf32 ~5e-4 and bf16 ~4e-3 (operands), hence bounds of
// per_sqrt_k * sqrt(K) absolute plus a relative part. Accumulating doubles the absolute part
// (the old value is summed in too).
struct GemmBound {
  Precision p;
  float per_sqrt_k, rtol;
};
constexpr GemmBound kGemmBounds[] = {
    {Precision::FP32, 1e-5f, 1e-4f}, {Precision::TF32, 4e-3f, 1e-2f}, {Precision::BF16, 2e-2f, 5e-2f}};

OpCase matmul_case(int64_t m, int64_t k, int64_t n, bool ta, bool tb, Into into, uint64_t seed) {
  OpCase c;
  c.op = into == Into::No ? "matmul" : into == Into::Overwrite ? "matmul_into" : "matmul_into accumulate";
  std::ostringstream name;
  name << c.op << " M " << m << " K " << k << " N " << n << (ta ? " aT" : "") << (tb ? " bT" : "");
  c.name = name.str();
  c.inputs = {testing::random_tensor(ta ? Shape{k, m} : Shape{m, k}, seed),
              testing::random_tensor(tb ? Shape{n, k} : Shape{k, n}, seed + 1)};
  if (into == Into::Accumulate) c.inputs.push_back(testing::random_tensor({m, n}, seed + 2));
  c.output_names = {"out"};
  c.forward = [=](const Tensors& in) {
    if (into == Into::No) return Tensors{ops::matmul(in[0], in[1], ta, tb)};
    Tensor out;
    if (into == Into::Overwrite) {
      out = Tensor::empty({m, n}, DType::F32, in[0].device());
      testing::poison(out);  // beta = 0 must not read the NaNs
    } else {
      out = in[2].clone();
    }
    ops::matmul_into(out, in[0], in[1], ta, tb, into == Into::Accumulate);
    return Tensors{out};
  };
  c.reference = [=](const Tensors& in) {
    return Tensors{naive_matmul(in[0], in[1], ta, tb, into == Into::Accumulate ? in[2] : Tensor())};
  };
  const float sqrt_k = std::sqrt(static_cast<float>(k));
  c.reference_bound = {1e-6f * sqrt_k, 1e-6f};
  for (GemmBound b : kGemmBounds)
    c.tolerances[b.p] = {{Bound{b.per_sqrt_k * sqrt_k * (into == Into::Accumulate ? 2.f : 1.f), b.rtol}}, {}};
  return c;
}

OpCase add_row_vector_case(const Shape& s, uint64_t seed) {
  OpCase c = make_case("add_row_vector", "add_row_vector x" + shape_str(s),
                       {testing::random_tensor(s, seed), testing::random_tensor({s[1]}, seed + 1)}, {"out"});
  c.forward = [](const Tensors& in) { return Tensors{ops::add_row_vector(in[0], in[1])}; };
  c.reference = [](const Tensors& in) { return Tensors{add_rows(in[0], in[1])}; };
  c.tolerances[Precision::FP32] = {{Bound{}}, {}};  // one float addition: equal on every backend
  return c;
}

OpCase sum_rows_case(const Shape& s, uint64_t seed) {
  OpCase c = make_case("sum_rows", "sum_rows x" + shape_str(s), {testing::random_tensor(s, seed)}, {"out"});
  c.forward = [](const Tensors& in) { return Tensors{ops::sum_rows(in[0])}; };
  c.reference = [](const Tensors& in) {
    const int64_t cols = in[0].dim(1);
    return Tensors{to_tensor(bucket_sums(in[0], cols, [cols](int64_t i) { return i % cols; }), {cols})};
  };
  c.reference_bound = {1e-6f, 1e-6f};
  // A float sum of N terms of size 1 against the CPU's double sum.
  c.tolerances[Precision::FP32] = {{Bound{1e-5f * std::sqrt(static_cast<float>(s[0])), 1e-5f}}, {}};
  return c;
}

// y = x wᵀ + b through nn::linear, whose backward (dx = g w, dw = gᵀ x, db = sum_rows g) is
// matmul's and sum_rows' gradient path.
OpCase linear_case(int64_t n, int64_t in, int64_t out, bool with_bias, uint64_t seed) {
  OpCase c;
  c.op = "linear";
  std::ostringstream name;
  name << "linear N " << n << " in " << in << " out " << out << (with_bias ? " bias" : " no bias");
  c.name = name.str();
  c.inputs = {testing::random_tensor({n, in}, seed), testing::random_tensor({out, in}, seed + 1)};
  if (with_bias) c.inputs.push_back(testing::random_tensor({out}, seed + 2));
  c.output_names = {"y"};
  c.wrt = with_bias ? std::vector<int>{0, 1, 2} : std::vector<int>{0, 1};
  from_layer(c, [](std::vector<Var>& v) { return nn::linear(v[0], v[1], v.size() > 2 ? v[2] : Var()); });
  c.reference = [](const Tensors& in) {
    Tensor y = naive_matmul(in[0], in[1], false, true, Tensor());
    return Tensors{in.size() > 2 ? add_rows(y, in[2]) : y};
  };
  c.reference_bound = {1e-6f * std::sqrt(static_cast<float>(in)), 1e-5f};
  const Bound fp32{1e-5f * std::sqrt(static_cast<float>(std::max(in, n))), 1e-4f};
  c.tolerances[Precision::FP32] = {{fp32}, {fp32}};
  return c;
}

}  // namespace

void add_dense_cases(std::vector<OpCase>& table, bool perf) {
  struct Gemm {
    int64_t m, k, n;
  };
  const std::vector<Gemm> gemms = perf ? std::vector<Gemm>{{512, 512, 512}, {2048, 576, 64}}
                                       : std::vector<Gemm>{{1, 1, 1}, {17, 33, 65}, {128, 512, 256}, {3, 1000, 2}};
  uint64_t seed = 1000;
  for (Gemm g : gemms)
    for (int t = 0; t < 4; ++t)
      for (Into into : {Into::No, Into::Overwrite, Into::Accumulate}) {
        if (perf && into != Into::No) continue;
        table.push_back(matmul_case(g.m, g.k, g.n, t & 1, t & 2, into, seed += 10));
      }
  const std::vector<Shape> rows =
      perf ? std::vector<Shape>{{32768, 512}} : std::vector<Shape>{{1, 1}, {1000, 3}, {3, 1000}, {257, 65}};
  for (const Shape& s : rows) {
    table.push_back(add_row_vector_case(s, seed += 10));
    table.push_back(sum_rows_case(s, seed += 10));
  }
  struct Linear {
    int64_t n, in, out;
  };
  const std::vector<Linear> linears = perf ? std::vector<Linear>{{32, 512, 10}, {128, 2048, 1000}}
                                           : std::vector<Linear>{{5, 4, 3}, {1, 1, 1}, {7, 13, 5}, {64, 256, 100}};
  for (Linear l : linears)
    for (bool with_bias : {true, false}) {
      if (perf && !with_bias) continue;
      table.push_back(linear_case(l.n, l.in, l.out, with_bias, seed += 10));
    }
}

}  // namespace mdq::optest

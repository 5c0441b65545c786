// Op table entries for pooling: max (with its argmax), average (padded zeros count) and global
// average, forward and backward, over the window geometries the models use; naive references.
#include <limits>
#include <sstream>

#include "engine/nn/pooling.h"
#include "engine/ops/pooling.h"
#include "tests/ops/naive.h"
#include "tests/ops/op_table.h"
#include "tests/support/inputs.h"

namespace mdq::optest {
namespace {

struct Window {
  int64_t kernel, stride, padding;
};

// Every window read directly: max (first of equals in row-major window order, padding never
// wins) with the flat plane index of the winner, or the average over kernel^2 (count_include_pad).
Tensors naive_pool(const Tensor& x, Window g, bool max) {
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const int64_t OH = (H + 2 * g.padding - g.kernel) / g.stride + 1, OW = (W + 2 * g.padding - g.kernel) / g.stride + 1;
  Tensor out = Tensor::zeros({N, C, OH, OW});
  std::vector<int32_t> argmax;
  for (int64_t plane = 0; plane < N * C; ++plane)
    for (int64_t i = 0; i < OH; ++i)
      for (int64_t j = 0; j < OW; ++j) {
        double sum = 0, best = -std::numeric_limits<double>::infinity();
        int32_t best_at = -1;
        for (int64_t kh = 0; kh < g.kernel; ++kh)
          for (int64_t kw = 0; kw < g.kernel; ++kw) {
            const int64_t h = i * g.stride - g.padding + kh, w = j * g.stride - g.padding + kw;
            if (h < 0 || h >= H || w < 0 || w >= W) continue;
            const float v = x.data<float>()[plane * H * W + h * W + w];
            sum += v;
            if (v > best) best = v, best_at = static_cast<int32_t>(h * W + w);
          }
        out.data<float>()[(plane * OH + i) * OW + j] = static_cast<float>(max ? best : sum / (g.kernel * g.kernel));
        argmax.push_back(best_at);
      }
  if (!max) return {out};
  return {out, Tensor::from_vector_i32(argmax, out.shape())};
}

std::string pool_name(const char* op, const Shape& s, Window g) {
  std::ostringstream name;
  name << op << " x" << shape_str(s) << " kernel " << g.kernel << " stride " << g.stride << " padding " << g.padding;
  return name.str();
}

// Pooling does the same float operations in the same order on every backend (max, window sums
// in row-major order), so the GPU bound is 1e-6 absolute (only to keep it nonzero).
const Bound kExact{1e-6f, 0};

// Max pooling gets values at least 0.05 apart (testing::distinct_values): no ties, and a
// finite-difference probe never changes a window's winner.
OpCase max_pool_case(const Shape& s, Window g, uint64_t seed) {
  OpCase c =
      make_case("max_pool2d", pool_name("max_pool2d", s, g), {testing::distinct_values(s, seed)}, {"out", "argmax"});
  c.forward = [g](const Tensors& in) {
    ops::MaxPool2dResult r = ops::max_pool2d_forward(in[0], g.kernel, g.stride, g.padding);
    return Tensors{r.out, r.argmax};
  };
  c.wrt = {0};
  c.backward = [g](const Tensors& in, const Tensors& grad) {
    Tensor argmax = ops::max_pool2d_forward(in[0], g.kernel, g.stride, g.padding).argmax;
    return Tensors{ops::max_pool2d_backward(grad[0], argmax, in[0].shape(), g.kernel, g.stride, g.padding)};
  };
  c.reference = [g](const Tensors& in) { return naive_pool(in[0], g, true); };
  c.layer = [g](std::vector<Var>& v) { return nn::max_pool2d(v[0], g.kernel, g.stride, g.padding); };
  c.tolerances[Precision::FP32] = {{kExact}, {kExact}};
  return c;
}

OpCase avg_pool_case(const Shape& s, Window g, uint64_t seed) {
  OpCase c = make_case("avg_pool2d", pool_name("avg_pool2d", s, g), {testing::random_tensor(s, seed)}, {"out"});
  c.forward = [g](const Tensors& in) { return Tensors{ops::avg_pool2d_forward(in[0], g.kernel, g.stride, g.padding)}; };
  c.wrt = {0};
  c.backward = [g](const Tensors& in, const Tensors& grad) {
    return Tensors{ops::avg_pool2d_backward(grad[0], in[0].shape(), g.kernel, g.stride, g.padding)};
  };
  c.reference = [g](const Tensors& in) { return naive_pool(in[0], g, false); };
  c.reference_bound = {1e-6f, 1e-6f};
  c.layer = [g](std::vector<Var>& v) { return nn::avg_pool2d(v[0], g.kernel, g.stride, g.padding); };
  c.tolerances[Precision::FP32] = {{kExact}, {kExact}};
  return c;
}

// GPU bound for the forward 1e-5 absolute: a warp-strided float sum against the CPU's.
OpCase global_avg_pool_case(const Shape& s, uint64_t seed) {
  OpCase c =
      make_case("global_avg_pool", "global_avg_pool x" + shape_str(s), {testing::random_tensor(s, seed)}, {"out"});
  c.forward = [](const Tensors& in) { return Tensors{ops::global_avg_pool_forward(in[0])}; };
  c.wrt = {0};
  c.backward = [](const Tensors& in, const Tensors& g) {
    return Tensors{ops::global_avg_pool_backward(g[0], in[0].shape())};
  };
  c.reference = [](const Tensors& in) {
    const int64_t planes = in[0].dim(0) * in[0].dim(1), hw = in[0].dim(2) * in[0].dim(3);
    std::vector<double> mean = bucket_sums(in[0], planes, [hw](int64_t i) { return i / hw; });
    for (double& m : mean) m /= static_cast<double>(hw);
    return Tensors{to_tensor(mean, {in[0].dim(0), in[0].dim(1)})};
  };
  c.reference_bound = {1e-6f, 1e-6f};
  c.layer = [](std::vector<Var>& v) { return nn::global_avg_pool(v[0]); };
  c.tolerances[Precision::FP32] = {{Bound{1e-5f, 0}}, {kExact}};
  return c;
}

}  // namespace

void add_pooling_cases(std::vector<OpCase>& table, bool perf) {
  uint64_t seed = 5000;
  if (perf) {
    const Shape s{32, 64, 32, 32};
    table.push_back(max_pool_case(s, {3, 2, 1}, seed));
    table.push_back(avg_pool_case(s, {3, 2, 1}, seed + 10));
    table.push_back(global_avg_pool_case({32, 512, 4, 4}, seed + 20));
    return;
  }
  const std::vector<Shape> shapes = {{1, 1, 5, 5},   {5, 3, 7, 9}, {1, 64, 8, 8}, {5, 64, 3, 3},
                                     {5, 3, 32, 32}, {2, 1, 1, 1}, {5, 1, 11, 6}};
  for (const Shape& s : shapes)
    for (Window g : {Window{2, 2, 0}, Window{3, 2, 1}, Window{3, 1, 1}, Window{2, 1, 0}, Window{1, 1, 0}}) {
      if (s[2] + 2 * g.padding < g.kernel || s[3] + 2 * g.padding < g.kernel) continue;
      table.push_back(max_pool_case(s, g, seed += 10));
      table.push_back(avg_pool_case(s, g, seed += 10));
    }
  // Small odd planes for the finite differences to cover every element.
  table.push_back(max_pool_case({2, 3, 5, 5}, {3, 2, 1}, seed += 10));
  table.push_back(max_pool_case({1, 2, 6, 7}, {2, 2, 0}, seed += 10));
  table.push_back(max_pool_case({1, 1, 4, 5}, {3, 1, 1}, seed += 10));
  table.push_back(avg_pool_case({2, 3, 5, 5}, {3, 2, 1}, seed += 10));
  table.push_back(avg_pool_case({1, 2, 4, 7}, {2, 1, 0}, seed += 10));
  for (const Shape& s : shapes) table.push_back(global_avg_pool_case(s, seed += 10));
  table.push_back(global_avg_pool_case({2, 3, 3, 5}, seed += 10));
}

}  // namespace mdq::optest

// Op table entries for the loss: softmax cross-entropy (forward with its probabilities, both
// backward overloads), top-k counts with ties, and the classifier head linear -> cross-entropy;
// with naive double references.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>
#include <vector>

#include "engine/nn/linear.h"
#include "engine/nn/loss.h"
#include "engine/ops/loss.h"
#include "tests/ops/op_table.h"
#include "tests/support/inputs.h"

namespace mdq::optest {
namespace {

// loss, probs and (probs - onehot) * scale / N, from a double log-sum-exp.
Tensors naive_cross_entropy(const Tensor& logits, const Tensor& labels, float scale) {
  const int64_t N = logits.dim(0), K = logits.dim(1);
  Tensor probs = Tensor::zeros({N, K}), grad = Tensor::zeros({N, K});
  double loss = 0;
  for (int64_t i = 0; i < N; ++i) {
    const float* row = logits.data<float>() + i * K;
    const double top = *std::max_element(row, row + K);
    double z = 0;
    for (int64_t j = 0; j < K; ++j) z += std::exp(row[j] - top);
    const int32_t label = labels.data<int32_t>()[i];
    loss += std::log(z) + top - row[label];
    for (int64_t j = 0; j < K; ++j) {
      const double p = std::exp(row[j] - top) / z;
      probs.data<float>()[i * K + j] = static_cast<float>(p);
      grad.data<float>()[i * K + j] = static_cast<float>((p - (j == label)) * scale / N);
    }
  }
  return {Tensor::full({1}, static_cast<float>(loss / N)), probs, grad};
}

// The rule of ops::count_topk_correct, written as a stable sort: order the classes by logit,
// larger first, equal logits in class order; a row counts when its label is among the first k,
// and never when a logit is NaN or infinite.
int32_t naive_topk(const Tensor& logits, const Tensor& labels, int64_t k) {
  const int64_t N = logits.dim(0), K = logits.dim(1);
  int32_t count = 0;
  for (int64_t i = 0; i < N; ++i) {
    const float* row = logits.data<float>() + i * K;
    const int32_t label = labels.data<int32_t>()[i];
    std::vector<int64_t> order(static_cast<size_t>(K));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [row](int64_t a, int64_t b) { return row[a] > row[b]; });
    bool finite = true;
    for (int64_t j = 0; j < K; ++j) finite = finite && std::isfinite(row[j]);
    const int64_t position = std::find(order.begin(), order.end(), label) - order.begin();
    count += finite && position < k;
  }
  return count;
}

constexpr float kScale = 0.5f;  // grad_scale of the float overload's output

// GPU bounds: loss 1e-5 (float block sum of N logs vs the CPU's), probs 1e-6 abs + 1e-5 rel
// (expf vs std::exp), gradients 1e-7 abs + 1e-5 rel (probs' error times scale / N).
OpCase cross_entropy_case(const Shape& s, float range, uint64_t seed) {
  OpCase c;
  c.op = "cross_entropy";
  std::ostringstream name;
  name << "cross_entropy logits" << shape_str(s) << " in [-" << range << ", " << range << ")";
  c.name = name.str();
  c.inputs = {testing::random_tensor(s, seed, -range, range), testing::random_labels(s[0], s[1], seed + 1)};
  c.output_names = {"loss", "probs", "cross_entropy_backward(grad_scale 0.5)"};
  c.forward = [](const Tensors& in) {
    // probs is written in place when it already holds an f32 [N, K] tensor: poisoned, so an
    // element the op forgets stays NaN.
    Tensor probs = Tensor::empty(in[0].shape(), DType::F32, in[0].device());
    testing::poison(probs);
    Tensor loss = ops::cross_entropy_forward(in[0], in[1], &probs);
    return Tensors{loss, probs, ops::cross_entropy_backward(probs, in[1], kScale)};
  };
  c.wrt = {0};
  c.backward = [](const Tensors& in, const Tensors& g) {
    Tensor probs;
    ops::cross_entropy_forward(in[0], in[1], &probs);
    return Tensors{ops::cross_entropy_backward(probs, in[1], g[0])};  // the upstream grad as a tensor
  };
  c.reference = [](const Tensors& in) { return naive_cross_entropy(in[0], in[1], kScale); };
  c.reference_bound = {1e-6f, 1e-5f};
  c.layer = [](std::vector<Var>& v) { return nn::cross_entropy(v[0], v[1].value()); };
  c.tolerances[Precision::FP32] = {{Bound{1e-5f, 1e-5f}, Bound{1e-6f, 1e-5f}, Bound{1e-7f, 1e-5f}},
                                   {Bound{1e-7f, 1e-5f}}};
  return c;
}

// Counts for k = 1, 5 and K; `coarse` turns the logits into the integers floor(2x), so many tie
// with the label's.
OpCase topk_case(const Shape& s, bool coarse, uint64_t seed) {
  OpCase c;
  c.op = "count_topk_correct";
  c.name = "count_topk_correct logits" + shape_str(s) + (coarse ? " coarse" : "");
  Tensor logits = testing::random_tensor(s, seed, -2.f, 2.f);
  if (coarse)
    for (int64_t i = 0; i < logits.numel(); ++i) logits.data<float>()[i] = std::floor(logits.data<float>()[i] * 2.f);
  c.inputs = {logits, testing::random_labels(s[0], s[1], seed + 1)};
  c.output_names = {"counts for k = 1, 5, K"};
  const int64_t K = s[1];
  c.forward = [K](const Tensors& in) {
    std::vector<int32_t> counts;
    for (int64_t k : {int64_t{1}, int64_t{5}, K})
      counts.push_back(static_cast<int32_t>(ops::count_topk_correct(in[0], in[1], static_cast<int>(k))));
    return Tensors{Tensor::from_vector_i32(counts, {3}, in[0].device())};  // where a backend keeps its outputs
  };
  c.reference = [K](const Tensors& in) {
    return Tensors{Tensor::from_vector_i32(
        {naive_topk(in[0], in[1], 1), naive_topk(in[0], in[1], 5), naive_topk(in[0], in[1], K)}, {3})};
  };
  c.tolerances[Precision::FP32] = {{Bound{}}, {}};  // counts: equal
  return c;
}

// The classifier head of every model: cross_entropy(linear(x, w, b), labels), through autograd.
OpCase head_case(int64_t n, int64_t in, int64_t classes, uint64_t seed) {
  OpCase c;
  c.op = "linear -> cross_entropy";
  c.name = "linear -> cross_entropy N " + std::to_string(n) + " in " + std::to_string(in) + " classes " +
           std::to_string(classes);
  c.inputs = {testing::random_tensor({n, in}, seed), testing::random_tensor({classes, in}, seed + 1),
              testing::random_tensor({classes}, seed + 2), testing::random_labels(n, classes, seed + 3)};
  c.output_names = {"loss"};
  c.wrt = {0, 1, 2};
  from_layer(c, [](std::vector<Var>& v) { return nn::cross_entropy(nn::linear(v[0], v[1], v[2]), v[3].value()); });
  const Bound fp32{1e-5f, 1e-4f};
  c.tolerances[Precision::FP32] = {{fp32}, {fp32}};
  return c;
}

}  // namespace

void add_loss_cases(std::vector<OpCase>& table, bool perf) {
  uint64_t seed = 3000;
  if (perf) {
    table.push_back(cross_entropy_case({256, 1000}, 8.f, seed));
    table.push_back(topk_case({256, 1000}, false, seed + 10));
    table.push_back(head_case(256, 512, 1000, seed + 20));
    return;
  }
  table.push_back(cross_entropy_case({4, 5}, 3.f, seed));
  for (const Shape& s : {Shape{1, 1}, Shape{3, 10}, Shape{37, 7}, Shape{128, 1000}, Shape{5, 33}})
    table.push_back(cross_entropy_case(s, 8.f, seed += 10));
  for (const Shape& s : {Shape{1, 1}, Shape{256, 10}, Shape{128, 1000}, Shape{33, 100}})
    for (bool coarse : {false, true}) table.push_back(topk_case(s, coarse, seed += 10));
  table.push_back(head_case(4, 6, 5, seed += 10));
}

}  // namespace mdq::optest

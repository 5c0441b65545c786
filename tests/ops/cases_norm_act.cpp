// Op table entries for batch normalisation (training and eval, with and without affine
// parameters, [N, C, H, W] and [N, C], with and without the fused ReLU) and the activations
// relu, relu6 and the straight-through sign (E9); with naive double references.
#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "engine/nn/activation.h"
#include "engine/nn/batchnorm.h"
#include "engine/ops/activation.h"
#include "engine/ops/batchnorm.h"
#include "tests/ops/naive.h"
#include "tests/ops/op_table.h"
#include "tests/support/inputs.h"

namespace mdq::optest {
namespace {

constexpr float kMomentum = 0.1f, kEps = 1e-5f;

// The shapes the GPU kernels' paths care about: C = 1, 3, 64; N = 1 and 5; odd H and W.
const std::vector<Shape> kShapes = {{1, 1, 5, 5},   {5, 3, 7, 9}, {1, 64, 8, 8}, {5, 64, 3, 3},
                                    {5, 3, 32, 32}, {2, 1, 1, 1}, {5, 1, 11, 6}};

// out, mean, invstd, running_mean, running_var by the formulas of engine/ops/batchnorm.h, in double.
Tensors naive_batch_norm(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& rm, const Tensor& rv,
                         bool training) {
  const int64_t N = x.dim(0), C = x.dim(1), HW = x.numel() / (N * C), M = N * HW;
  Tensor out = Tensor::zeros(x.shape()), mean = Tensor::zeros({C}), invstd = Tensor::zeros({C});
  Tensor new_rm = rm.clone(), new_rv = rv.clone();
  auto at = [&](int64_t n, int64_t c, int64_t k) { return (n * C + c) * HW + k; };
  for (int64_t c = 0; c < C; ++c) {
    double m = 0, v = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < HW; ++k) m += x.data<float>()[at(n, c, k)];
    m /= M;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < HW; ++k) v += std::pow(x.data<float>()[at(n, c, k)] - m, 2);
    v /= M;
    if (training) {
      new_rm.data<float>()[c] = static_cast<float>((1 - kMomentum) * rm.data<float>()[c] + kMomentum * m);
      new_rv.data<float>()[c] =
          static_cast<float>((1 - kMomentum) * rv.data<float>()[c] + kMomentum * v * M / (M - 1.0));
    } else {
      m = rm.data<float>()[c];
      v = rv.data<float>()[c];
    }
    const double is = 1 / std::sqrt(v + kEps), scale = w.defined() ? w.data<float>()[c] : 1.0;
    const double shift = b.defined() ? b.data<float>()[c] : 0.0;
    mean.data<float>()[c] = static_cast<float>(m);
    invstd.data<float>()[c] = static_cast<float>(is);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < HW; ++k)
        out.data<float>()[at(n, c, k)] = static_cast<float>((x.data<float>()[at(n, c, k)] - m) * is * scale + shift);
  }
  return {out, mean, invstd, new_rm, new_rv};
}

// Normal(1.5, 2) values (a mean well away from zero exercises the two-pass variance), redrawn
// until every channel's values spread by at least 0.1: two near-equal draws in a channel of
// M = 2 leave var << eps, where the output has a cliff no finite-difference step resolves.
Tensor batch_norm_input(const Shape& shape, uint64_t seed) {
  for (;; seed += 1000) {
    Tensor x = Tensor::normal(shape, 1.5f, 2.f, seed);
    const int64_t N = shape[0], C = shape[1], HW = x.numel() / (N * C);
    bool spread = true;
    for (int64_t c = 0; c < C && spread; ++c) {
      float lo = x.data<float>()[c * HW], hi = lo;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < HW; ++k) {
          const float v = x.data<float>()[(n * C + c) * HW + k];
          lo = std::min(lo, v), hi = std::max(hi, v);
        }
      spread = hi - lo >= 0.1f;
    }
    if (spread) return x;
  }
}

// batch_norm_input's values for BN with a fused ReLU, with every element whose pre (the output
// before the ReLU) lies near the kink moved away from it: |pre| >= 0.1 (a finite-difference step
// of 1e-2 on the weight or bias moves pre by 1e-2 |xhat|) and >= 0.05 in x's units (the step on
// x; in training it also moves the statistics, by less). Neither the finite differences nor the
// GPU's last-bit differences then cross the kink. Training statistics move with x, so the check
// repeats until nothing moves, on a fresh draw if that does not settle.
Tensor batch_norm_relu_input(const Shape& shape, uint64_t seed, const Tensor& w, const Tensor& b, const Tensor& rm,
                             const Tensor& rv, bool training) {
  const int64_t N = shape[0], C = shape[1];
  for (int draw = 0; draw < 50; ++draw, seed += 1000) {
    Tensor x = batch_norm_input(shape, seed);
    const int64_t HW = x.numel() / (N * C);
    float* px = x.data<float>();
    for (int pass = 0; pass < 20; ++pass) {
      const Tensors ref = naive_batch_norm(x, w, b, rm, rv, training);  // ref[0] is pre
      bool moved = false;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t c = 0; c < C; ++c) {
          const double slope = ref[2].data<float>()[c] * (w.defined() ? w.data<float>()[c] : 1.0);
          const double margin = std::max(0.1, 0.05 * std::fabs(slope));
          for (int64_t k = (n * C + c) * HW; k < (n * C + c + 1) * HW; ++k) {
            const double pre = ref[0].data<float>()[k];
            if (std::fabs(pre) >= margin) continue;
            px[k] += static_cast<float>((pre >= 0 ? 2 : -2) * margin / slope);  // to 2x the margin, same side
            moved = true;
          }
        }
      if (!moved) return x;
    }
  }
  throw std::runtime_error("batch_norm_relu_input: no input keeps away from the kink for x" + shape_str(shape));
}

// GPU bounds: out and grad_input 1e-4 abs + rel (float block reductions vs double); the
// per-channel sums dweight and dbias 1e-3 abs + 1e-4 rel (sums of M terms of size 1); mean,
// invstd and running stats 1e-5 abs + rel.
// relu: the fused ReLU, against BN then ReLU composed in double (the same bounds: the inputs keep
// away from the kink, so both backends take the same side of it).
OpCase batch_norm_case(const Shape& shape, bool training, bool affine, bool relu, uint64_t seed) {
  const int64_t C = shape[1];
  OpCase c;
  c.op = relu ? "batch_norm_relu" : "batch_norm";
  c.name = c.op + " x" + shape_str(shape) + (training ? " training" : " eval") + (affine ? " affine" : "");
  c.inputs = {Tensor()};  // x, drawn below
  if (affine) c.inputs.push_back(testing::random_tensor({C}, seed + 1, 0.5f, 2.f));
  if (affine) c.inputs.push_back(testing::random_tensor({C}, seed + 2));
  c.inputs.push_back(testing::random_tensor({C}, seed + 3));             // running_mean
  c.inputs.push_back(testing::random_tensor({C}, seed + 4, 0.5f, 2.f));  // running_var
  {
    const size_t r = affine ? 3 : 1;
    c.inputs[0] = relu ? batch_norm_relu_input(shape, seed, affine ? c.inputs[1] : Tensor(),
                                               affine ? c.inputs[2] : Tensor(), c.inputs[r], c.inputs[r + 1], training)
                       : batch_norm_input(shape, seed);
  }
  c.output_names = {"out", "mean", "invstd", "running_mean", "running_var"};
  const size_t r = affine ? 3 : 1;  // index of running_mean
  auto weight = [affine](const Tensors& in) { return affine ? in[1] : Tensor(); };
  auto bias = [affine](const Tensors& in) { return affine ? in[2] : Tensor(); };
  auto forward = [=](const Tensors& in) {
    Tensor rm = in[r].clone(), rv = in[r + 1].clone();  // updated in place: the inputs stay as they are
    ops::BatchNormResult res =
        ops::batch_norm_forward(in[0], weight(in), bias(in), rm, rv, training, kMomentum, kEps, relu);
    return Tensors{res.out, res.mean, res.invstd, rm, rv};
  };
  c.forward = forward;
  c.wrt = affine ? std::vector<int>{0, 1, 2} : std::vector<int>{0};
  c.backward = [=](const Tensors& in, const Tensors& g) {
    const Tensors f = forward(in);
    ops::BatchNormGrads d = ops::batch_norm_backward(g[0], in[0], weight(in), bias(in), f[1], f[2], training, relu);
    return affine ? Tensors{d.grad_input, d.grad_weight, d.grad_bias} : Tensors{d.grad_input};
  };
  c.reference = [=](const Tensors& in) {
    Tensors ref = naive_batch_norm(in[0], weight(in), bias(in), in[r], in[r + 1], training);
    if (relu) ref[0] = naive_map(ref[0], [](float v, int64_t) { return v > 0 ? v : 0.f; });
    return ref;
  };
  c.reference_bound = {1e-5f, 1e-5f};
  c.layer = [=](std::vector<Var>& v) {
    Tensor rm = v[r].value().clone(), rv = v[r + 1].value().clone();
    return nn::batch_norm(v[0], affine ? v[1] : Var(), affine ? v[2] : Var(), rm, rv, training, kMomentum, kEps,
                          relu);
  };
  const Bound out{1e-4f, 1e-4f}, stats{1e-5f, 1e-5f}, channel_sums{1e-3f, 1e-4f};
  c.tolerances[Precision::FP32] = {{out, stats}, {out, channel_sums}};
  return c;
}

enum class Act { Relu, Relu6, Sign };

// Activations are selects: every backend computes the same float, so the GPU bound is 1e-6
// absolute (only to keep it nonzero). relu and relu6 get inputs away from their kinks, so the
// finite differences see one side; sign's backward is the clipped straight-through rule
// g 1[|x| <= 1], not its derivative, so a reference checks it instead.
OpCase activation_case(Act act, const Shape& shape, uint64_t seed) {
  const std::string op = act == Act::Relu ? "relu" : act == Act::Relu6 ? "relu6" : "sign";
  OpCase c = make_case(op, op + " x" + shape_str(shape),
                       {act == Act::Sign ? testing::random_tensor(shape, seed, -2.f, 2.f)  // both sides of |x| = 1
                                         : testing::away_from_kinks(shape, seed)},
                       {"out"});
  c.wrt = {0};
  switch (act) {
    case Act::Relu:
      c.forward = [](const Tensors& in) { return Tensors{ops::relu_forward(in[0])}; };
      c.backward = [](const Tensors& in, const Tensors& g) { return Tensors{ops::relu_backward(g[0], in[0])}; };
      c.reference = [](const Tensors& in) {
        return Tensors{naive_map(in[0], [](float x, int64_t) { return x > 0 ? x : 0.f; })};
      };
      c.layer = [](std::vector<Var>& v) { return nn::relu(v[0]); };
      break;
    case Act::Relu6:
      c.forward = [](const Tensors& in) { return Tensors{ops::relu6_forward(in[0])}; };
      c.backward = [](const Tensors& in, const Tensors& g) { return Tensors{ops::relu6_backward(g[0], in[0])}; };
      c.reference = [](const Tensors& in) {
        return Tensors{naive_map(in[0], [](float x, int64_t) { return x < 0 ? 0.f : x > 6 ? 6.f : x; })};
      };
      c.layer = [](std::vector<Var>& v) { return nn::relu6(v[0]); };
      break;
    case Act::Sign:
      c.forward = [](const Tensors& in) { return Tensors{ops::sign_forward(in[0])}; };
      c.backward = [](const Tensors& in, const Tensors& g) { return Tensors{ops::sign_ste_backward(g[0], in[0])}; };
      c.finite_differences = false;
      c.reference = [](const Tensors& in) {
        return Tensors{naive_map(in[0], [](float x, int64_t) { return x >= 0 ? 1.f : -1.f; })};
      };
      c.reference_backward = [](const Tensors& in, const Tensors& g) {
        const float* pg = g[0].data<float>();
        return Tensors{naive_map(in[0], [pg](float x, int64_t i) { return std::fabs(x) <= 1 ? pg[i] : 0.f; })};
      };
      c.layer = [](std::vector<Var>& v) { return nn::sign_ste(v[0]); };
      break;
  }
  const Bound exact{1e-6f, 0};
  c.tolerances[Precision::FP32] = {{exact}, {exact}};
  return c;
}

}  // namespace

void add_norm_act_cases(std::vector<OpCase>& table, bool perf) {
  uint64_t seed = 4000;
  std::vector<Shape> bn_shapes = kShapes, act_shapes = kShapes;
  for (const Shape& s : std::vector<Shape>{{5, 3}, {5, 64}, {2, 1}, {128, 512}, {4, 1, 1, 1}, {3, 4, 3, 2}, {6, 4}})
    bn_shapes.push_back(s);
  // kernels/batchnorm.cu splits a channel into chunks of >= 4096 elements: several chunks with
  // float4 loads, with scalar loads and chunk ends mid-plane (odd HW), with HW = 1; and HW = 16,
  // where one warp covers 8 planes.
  for (const Shape& s : std::vector<Shape>{{16, 4, 32, 32}, {7, 3, 37, 41}, {9000, 2}, {8, 5, 4, 4}})
    bn_shapes.push_back(s);
  act_shapes.push_back({7});
  act_shapes.push_back({2, 3, 4, 5});
  if (perf) bn_shapes = act_shapes = {{32, 64, 32, 32}, {32, 512}};
  for (const Shape& s : bn_shapes)
    for (bool training : {true, false})
      for (bool affine : {false, true}) table.push_back(batch_norm_case(s, training, affine, false, seed += 10));
  for (const Shape& s : act_shapes)
    for (Act act : {Act::Relu, Act::Relu6, Act::Sign}) table.push_back(activation_case(act, s, seed += 10));
  for (const Shape& s : bn_shapes)
    for (bool training : {true, false})
      for (bool affine : {false, true}) table.push_back(batch_norm_case(s, training, affine, true, seed += 10));
}

}  // namespace mdq::optest

// The op table (after ggml's test-backend-ops): one entry per op and shape, with its inputs, what
// it computes forward and backward, and the error each comparison may show. One table drives
//   tests/cpu/test_ops.cpp      the CPU half: backward against central finite differences, the
//                               forward against a naive reference where there is one, the nn::
//                               layer against the op (CI runs this on a machine without a GPU);
//   tests/gpu/test_ops_gpu.cpp  every other backend against the CPU, forward and backward, under
//                               each precision the entry states bounds for;
//   benchmarks/bench_ops.cpp    time per op and backend (perf mode; timing never fails anything).
// Hand-computed values, edge cases and error messages are not table material: they live in
// tests/cpu/test_ops_by_hand*.cpp and tests/gpu/test_ops_by_hand_gpu.cpp (the layer classes in
// tests/cpu/test_nn_modules.cpp and tests/gpu/test_nn_modules_gpu.cpp).
#pragma once
#include <algorithm>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/precision.h"
#include "engine/tensor.h"
#include "tests/support/compare.h"

namespace mdq::optest {

using testing::Bound;
using Tensors = std::vector<Tensor>;
// Computes on the device of its inputs and never modifies them.
using Forward = std::function<Tensors(const Tensors& inputs)>;
// The gradients, one per input in OpCase::wrt, of sum_j <grad_outputs[j], output_j> over the
// first OpCase::grad_outputs outputs.
using Backward = std::function<Tensors(const Tensors& inputs, const Tensors& grad_outputs)>;
// The differentiable nn:: version of an op, on Vars of all the inputs; returns output 0.
using Layer = std::function<Var(std::vector<Var>& inputs)>;

// What a backend may differ from the CPU under one precision.
struct Tolerance {
  std::vector<Bound> outputs;  // per forward output; the last one stands for the rest
  std::vector<Bound> grads;    // per input in wrt; the last one stands for the rest
  const Bound& output(size_t j) const { return outputs[std::min(j, outputs.size() - 1)]; }
  const Bound& grad(size_t k) const { return grads[std::min(k, grads.size() - 1)]; }
};

struct OpCase {
  std::string op;    // the function under test, "conv2d": perf output and filters group by it
  std::string name;  // op, parameters and shapes; unique in the table
  Tensors inputs;    // on the CPU, from fixed seeds, never all zeros (labels are i32)
  std::vector<std::string> output_names;
  Forward forward;

  // Backward: empty for forward-only ops (matmul, sum_rows, ...: their gradients are other ops).
  Backward backward;
  std::vector<int> wrt;  // f32 inputs that get a gradient
  int grad_outputs = 1;  // outputs that carry an upstream gradient (the rest are by-products)
  // Finite differences check `backward` unless it is a rule rather than a derivative (the
  // straight-through sign, E9); reference_backward checks it then.
  bool finite_differences = true;
  float fd_step = 1e-2f;
  Bound fd_bound{2e-3f, 2e-2f};

  // Independent naive CPU computations (double accumulation), where the table has one.
  Forward reference;
  Bound reference_bound;
  Backward reference_backward;

  // The nn:: function built on the op: its output and autograd gradients must equal the op's.
  Layer layer;

  // Bounds against the CPU per precision a backend runs this entry under. FP32 is always there;
  // TF32 and BF16 only where the op's speed depends on them (cuBLAS, cuDNN).
  std::map<Precision, Tolerance> tolerances;
};

// The check table: small and odd shapes (C = 1, odd H and W, N = 1, strides that drop rows).
// Built once per process: Catch runs a test case again for each of its sections.
const std::vector<OpCase>& op_cases();
// The same entries at training sizes (CIFAR ResNet-18 layers, batch 32) for the perf mode.
std::vector<OpCase> op_perf_cases();

// Builders per family (tests/ops/cases_*.cpp); `perf` picks the sizes.
void add_conv2d_cases(std::vector<OpCase>& table, bool perf);
void add_dense_cases(std::vector<OpCase>& table, bool perf);     // matmul, rows, linear
void add_loss_cases(std::vector<OpCase>& table, bool perf);      // cross-entropy, top-k
void add_norm_act_cases(std::vector<OpCase>& table, bool perf);  // batch norm, activations
void add_pooling_cases(std::vector<OpCase>& table, bool perf);
void add_elementwise_cases(std::vector<OpCase>& table, bool perf);

// An entry with its names, inputs and output names set; the builders add the rest.
OpCase make_case(const std::string& op, const std::string& name, Tensors inputs, std::vector<std::string> outputs);

// Builds forward and backward of an entry whose backward lives in autograd (elementwise ops,
// linear): forward runs the layer without grad, backward seeds its output with grad_outputs[0].
void from_layer(OpCase& c, Layer layer);

}  // namespace mdq::optest

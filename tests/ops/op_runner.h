// Running an op table entry on a backend: inputs copied to the device, the forward, the backward
// from fixed upstream gradients, the nn:: layer, and the finite-difference gradient on the CPU.
// No test framework here: tests/cpu/test_ops.cpp and tests/gpu/test_ops_gpu.cpp assert on what
// these return, benchmarks/bench_ops.cpp times them.
#pragma once
#include <string>
#include <vector>

#include "tests/ops/op_table.h"
#include "tests/support/precision_scope.h"

namespace mdq::optest {

// The backends besides the CPU that this build and machine can run (CUDA with a GPU).
std::vector<Device> accelerators();

Tensors to_device(const Tensors& ts, Device device);  // undefined tensors stay undefined

Tensors run_forward(const OpCase& c, Device device);
// Fixed random weights r_j, one per output that carries a gradient (seeded, never zero); the
// backward checks differentiate L = sum_j <r_j, output_j>.
Tensors upstream_grads(const OpCase& c, const Tensors& outputs);
Tensors run_backward(const OpCase& c, Device device, const Tensors& grad_outputs);

struct LayerRun {
  Tensor output;
  Tensors grads;  // per input in wrt
};
LayerRun run_layer(const Layer& layer, const Tensors& inputs, const std::vector<int>& wrt, const Tensor& grad_output);

// Finite differences of L = sum_j <r_j, output_j> (in double) with respect to input wrt[k], at
// fd_elements(input): every element of a small input, an even spread of a large one.
std::vector<int64_t> fd_elements(const Tensor& input);
std::vector<double> numeric_grad(const OpCase& c, const Tensors& grad_outputs, size_t k);
// The elements of t (read on the host) at `elements`, as a 1-D f32 tensor.
Tensor gather(const Tensor& t, const std::vector<int64_t>& elements);

// Allocates and frees a NaN-filled block of each shape, so the caching allocator hands them to
// the op's next outputs: an element a kernel forgets to write then stays NaN. (No effect on the
// CPU, whose outputs are fresh allocations.)
void poison_next(const std::vector<Shape>& shapes, Device device);
std::vector<Shape> shapes_of(const Tensors& ts);

// Names for messages: "conv2d ... on cuda under tf32".
std::string where(const OpCase& c, Device device, Precision p);

using testing::PrecisionScope;

}  // namespace mdq::optest

// The backend half of the op table (tests/ops/op_table.h): every entry on every backend besides
// the CPU (CUDA), under each precision the entry states bounds for, against the CPU on the same
// inputs: every forward output, the backward from the same upstream gradients, and the nn:: layer
// on that backend against its op. Outputs are poisoned with NaN (an unwritten element fails) and
// every call runs twice: the same inputs must give the same bits. Without a GPU the binary exits
// 77 (tests/support/catch_gpu_main.cpp) and ctest shows it skipped.
#include "tests/ops/op_runner.h"
#include "tests/support/testing.h"

using namespace mdq;
using namespace mdq::optest;

namespace {

using testing::check;

// Runs fn twice on `device`, the second time into poisoned memory; checks both runs agree bit
// for bit and returns the second. The first run also pays for one-time work (cuDNN's search).
Tensors twice(const std::function<Tensors()>& fn, Device device, const std::vector<Shape>& output_shapes) {
  const Tensors first = fn();
  poison_next(output_shapes, device);
  const Tensors second = fn();
  REQUIRE(second.size() == first.size());
  for (size_t i = 0; i < first.size(); ++i)
    check(testing::compare(second[i], first[i], {}), "run twice, output " + std::to_string(i));
  return second;
}

void check_backend(const OpCase& c, Device device, const Tolerance& tol) {
  const Tensors cpu = c.forward(c.inputs);
  const Tensors got = twice([&] { return run_forward(c, device); }, device, shapes_of(cpu));
  REQUIRE(got.size() == cpu.size());
  for (size_t j = 0; j < cpu.size(); ++j) {
    CHECK(got[j].device() == device);
    check(testing::compare(got[j], cpu[j], tol.output(j)), c.output_names[j]);
  }
  if (!c.backward) return;
  const Tensors r = upstream_grads(c, cpu);
  const Tensors want = c.backward(c.inputs, r);
  const Tensors grads = twice([&] { return run_backward(c, device, r); }, device, shapes_of(want));
  REQUIRE(grads.size() == want.size());
  for (size_t k = 0; k < want.size(); ++k)
    check(testing::compare(grads[k], want[k], tol.grad(k)), "grad of input " + std::to_string(c.wrt[k]));
  if (!c.layer) return;
  const LayerRun layer = run_layer(c.layer, to_device(c.inputs, device), c.wrt, r[0].to(device));
  check(testing::compare(layer.output, got[0], tol.output(0)), "layer output");
  REQUIRE(layer.grads.size() == grads.size());
  for (size_t k = 0; k < grads.size(); ++k)
    check(testing::compare(layer.grads[k], grads[k], tol.grad(k)), "layer grad of input " + std::to_string(c.wrt[k]));
}

}  // namespace

TEST_CASE("op table: every backend matches the CPU, forward and backward, under each stated precision") {
  const std::vector<Device> backends = accelerators();
  REQUIRE_FALSE(backends.empty());  // catch_gpu_main.cpp skipped the run otherwise
  for (Device device : backends)
    for (const OpCase& c : op_cases())
      for (const auto& [precision, tol] : c.tolerances) {
        DYNAMIC_SECTION(where(c, device, precision)) {
          PrecisionScope scope(precision);
          check_backend(c, device, tol);
        }
      }
}

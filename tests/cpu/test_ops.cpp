// The CPU half of the op table (tests/ops/op_table.h), which CI runs on a machine without a GPU.
// Per entry: the backward against central finite differences (or, for a rule such as the
// straight-through sign, against its reference), the forward against a naive reference, and the
// nn:: layer against the op it is built on. Every other backend is compared with these CPU
// results by tests/gpu/test_ops_gpu.cpp.
#include <set>

#include "tests/ops/naive.h"
#include "tests/ops/op_runner.h"
#include "tests/support/testing.h"

using namespace mdq;
using namespace mdq::optest;

namespace {

using testing::check;

bool all_zero(const Tensor& t) {
  for (float v : t.to_vector())
    if (v != 0.f) return false;
  return true;
}

}  // namespace

TEST_CASE("op table: unique names, nonzero inputs, stated bounds, a check for every backward") {
  std::set<std::string> names;
  for (const OpCase& c : op_cases()) {
    INFO(c.name);
    CHECK(names.insert(c.name).second);  // sections and reports are told apart by name
    for (const Tensor& t : c.inputs)
      if (t.dtype() == DType::F32) CHECK_FALSE(all_zero(t));
    REQUIRE(c.tolerances.count(Precision::FP32) == 1);
    const Tensors outputs = c.forward(c.inputs);
    CHECK(outputs.size() == c.output_names.size());
    if (!c.backward) continue;
    CHECK((c.grad_outputs >= 1 && c.grad_outputs <= static_cast<int>(outputs.size())));
    CHECK((c.finite_differences || c.reference_backward));
    for (const auto& [precision, tol] : c.tolerances) CHECK_FALSE(tol.grads.empty());
    for (int k : c.wrt) CHECK(c.inputs[static_cast<size_t>(k)].dtype() == DType::F32);
  }
}

TEST_CASE("op table: every backward matches central finite differences") {
  for (const OpCase& c : op_cases()) {
    if (!c.backward || !c.finite_differences) continue;
    DYNAMIC_SECTION(c.name) {
      const Tensors r = upstream_grads(c, c.forward(c.inputs));
      const Tensors grads = c.backward(c.inputs, r);
      REQUIRE(grads.size() == c.wrt.size());
      for (size_t k = 0; k < c.wrt.size(); ++k) {
        const Tensor& x = c.inputs[static_cast<size_t>(c.wrt[k])];
        const std::string what = "d L / d input " + std::to_string(c.wrt[k]);
        CHECK(grads[k].shape() == x.shape());
        const std::vector<double> slopes = numeric_grad(c, r, k);
        const Tensor numeric = to_tensor(slopes, {static_cast<int64_t>(slopes.size())});
        check(testing::compare(gather(grads[k], fd_elements(x)), numeric, c.fd_bound), what);
      }
    }
  }
}

TEST_CASE("op table: a backward that is a rule matches its reference") {
  for (const OpCase& c : op_cases()) {
    if (!c.reference_backward) continue;
    DYNAMIC_SECTION(c.name) {
      const Tensors r = upstream_grads(c, c.forward(c.inputs));
      const Tensors got = c.backward(c.inputs, r), want = c.reference_backward(c.inputs, r);
      REQUIRE(got.size() == want.size());
      for (size_t k = 0; k < got.size(); ++k)
        check(testing::compare(got[k], want[k], c.reference_bound), "grad of input " + std::to_string(c.wrt[k]));
    }
  }
}

TEST_CASE("op table: every forward matches its naive reference") {
  for (const OpCase& c : op_cases()) {
    if (!c.reference) continue;
    DYNAMIC_SECTION(c.name) {
      const Tensors got = c.forward(c.inputs), want = c.reference(c.inputs);
      REQUIRE(got.size() == want.size());
      for (size_t j = 0; j < got.size(); ++j)
        check(testing::compare(got[j], want[j], c.reference_bound), c.output_names[j]);
    }
  }
}

TEST_CASE("op table: each nn:: layer computes what its op computes, forward and backward") {
  for (const OpCase& c : op_cases()) {
    if (!c.layer) continue;
    DYNAMIC_SECTION(c.name) {
      // The same op on the same inputs: equal bits.
      const Tensors outputs = c.forward(c.inputs);
      const Tensors r = upstream_grads(c, outputs);
      const Tensors grads = c.backward(c.inputs, r);
      const LayerRun layer = run_layer(c.layer, c.inputs, c.wrt, r[0]);
      check(testing::compare(layer.output, outputs[0], {}), "layer output");
      REQUIRE(layer.grads.size() == grads.size());
      for (size_t k = 0; k < grads.size(); ++k)
        check(testing::compare(layer.grads[k], grads[k], {}), "layer grad of input " + std::to_string(c.wrt[k]));
    }
  }
}

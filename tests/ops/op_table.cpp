#include "tests/ops/op_table.h"

#include <utility>

#include "tests/ops/op_runner.h"

namespace mdq::optest {

namespace {
std::vector<OpCase> build(bool perf) {
  std::vector<OpCase> table;
  add_conv2d_cases(table, perf);
  add_dense_cases(table, perf);
  add_loss_cases(table, perf);
  add_norm_act_cases(table, perf);
  add_pooling_cases(table, perf);
  add_elementwise_cases(table, perf);
  return table;
}
}  // namespace

const std::vector<OpCase>& op_cases() {
  static const std::vector<OpCase> table = build(false);
  return table;
}
std::vector<OpCase> op_perf_cases() { return build(true); }

OpCase make_case(const std::string& op, const std::string& name, Tensors inputs, std::vector<std::string> outputs) {
  OpCase c;
  c.op = op;
  c.name = name;
  c.inputs = std::move(inputs);
  c.output_names = std::move(outputs);
  return c;
}

void from_layer(OpCase& c, Layer layer) {
  c.forward = [layer](const Tensors& in) {
    NoGradScope no_grad;
    std::vector<Var> vars(in.begin(), in.end());
    return Tensors{layer(vars).value()};
  };
  c.backward = [layer, wrt = c.wrt](const Tensors& in, const Tensors& grad_outputs) {
    return run_layer(layer, in, wrt, grad_outputs[0]).grads;
  };
}

}  // namespace mdq::optest

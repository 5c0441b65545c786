// GraphedForward (engine/graphed_forward.h), mdq-infer's batches: a forward replayed from a CUDA
// graph must give the eager forward's logits bit for bit (the same kernels, the same arguments),
// on the packed W1A1 plan (the tensor-core stem) and on the float engine, for every input of the
// captured shape, copied into the graph's input buffer or that buffer itself; a call of another
// shape runs eagerly; each call's logits survive the later replays; a capture that fails leaves
// every call eager, with the reason; so does a reason given up front.
#include <stdexcept>
#include <vector>

#include "engine/cuda_graph.h"
#include "engine/graphed_forward.h"
#include "engine/infer/lower.h"
#include "tests/support/inputs.h"
#include "tests/support/packed_nets.h"
#include "tests/support/testing.h"

using namespace mdq;

#ifdef MDQ_HAS_CUDA
namespace {

// Calls `forward` graphed on a sequence of inputs (two shapes, repeats, the captured tensor
// itself) and checks each result against the eager forward of the same input, after all calls.
void check_graphed(const GraphedForward::Forward& eager, const Shape& shape) {
  GraphedForward graphed(eager);
  Shape small = shape;
  small[0] = 3;
  std::vector<Tensor> inputs;
  for (uint64_t seed : {1, 2, 3, 4}) inputs.push_back(testing::random_tensor(shape, seed, -2.f, 2.f, Device::CUDA));
  inputs.push_back(testing::random_tensor(small, 5, -2.f, 2.f, Device::CUDA));
  // eager, eager, the capture on inputs[2], replays (copies), another shape (eager), a replay
  const std::vector<int> order = {0, 1, 2, 2, 3, 0, 4, 1};
  std::vector<Tensor> got;
  for (size_t i = 0; i < order.size(); ++i) {
    got.push_back(graphed(inputs[static_cast<size_t>(order[i])]));
    if (i == 1) CHECK_FALSE(graphed.replaying());
    if (i == 2) CHECK(graphed.replaying());
  }
  // The caller's inputs are never written; the graph's buffer holds the last replayed one and,
  // passed in, replays with no copy.
  CHECK(graphed.input().raw() != inputs[1].raw());
  CHECK(graphed.input().to_vector() == inputs[1].to_vector());
  const Tensor again = graphed(graphed.input());
  CHECK(again.to_vector() == got.back().to_vector());
  INFO(graphed.why());
  CHECK(graphed.why().rfind("replayed from a CUDA graph", 0) == 0);
  for (size_t i = 0; i < order.size(); ++i) {
    INFO("call " << i << " on input " << order[i]);
    const Tensor want = eager(inputs[static_cast<size_t>(order[i])]);
    REQUIRE(got[i].shape() == want.shape());
    CHECK(got[i].to_vector() == want.to_vector());
  }
}

}  // namespace

TEST_CASE("GraphedForward: the W1A1 plan's replays equal its eager forward bit for bit") {
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 3, o.image_size = 64, o.act_bits = 1;
  auto model = testing::rounded_model("resnet18", o, 2, 41);
  model->to(Device::CUDA);
  infer::LowerOptions options{Device::CUDA, infer::PackedPrecision::SplitBF16};
  options.stem = infer::StemPath::TensorCores;
  std::string why;
  auto plan = infer::lower(*model, options, &why);
  INFO(why);
  REQUIRE(plan);
  check_graphed([&](const Tensor& x) { return plan->logits(x); }, {8, 3, 64, 64});
}

TEST_CASE("GraphedForward: the float engine's replays equal its eager forward bit for bit") {
  models::ModelOptions o;
  o.num_classes = 10, o.in_channels = 3, o.image_size = 32;
  auto model = testing::rounded_model("resnet18", o, 2, 43);
  model->to(Device::CUDA);
  model->eval();
  check_graphed([&](const Tensor& x) {
    NoGradScope no_grad;
    return model->forward(Var(x)).value();
  }, {8, 3, 32, 32});
}

TEST_CASE("GraphedForward: a failed capture leaves every call eager, saying why; off and the CPU are eager") {
  int calls = 0;
  GraphedForward graphed([&](const Tensor& x) {
    ++calls;
    if (CudaGraph::capturing()) throw std::runtime_error("this forward cannot be captured");
    return x.clone();
  });
  const Tensor x = testing::random_tensor({4, 5}, 7, -1.f, 1.f, Device::CUDA);
  for (int i = 0; i < 4; ++i) CHECK(graphed(x).to_vector() == x.to_vector());
  CHECK(calls == 5);  // two eager, the failed capture and its eager rerun, one more eager
  CHECK_FALSE(graphed.replaying());
  CHECK(graphed.why().find("this forward cannot be captured") != std::string::npos);

  GraphedForward off([](const Tensor& x) { return x.clone(); }, "turned off");
  for (int i = 0; i < 4; ++i) off(x);
  CHECK_FALSE(off.replaying());
  CHECK(off.why() == "eager: turned off");
  GraphedForward on_cpu([](const Tensor& x) { return x.clone(); });
  const Tensor y = testing::random_tensor({4, 5}, 8);
  for (int i = 0; i < 4; ++i) CHECK(on_cpu(y).to_vector() == y.to_vector());
  CHECK_FALSE(on_cpu.replaying());
}

#else
TEST_CASE("GraphedForward GPU tests need a CUDA build") { SUCCEED("not a CUDA build"); }
#endif

// Data parallelism on one GPU: the NCCL path with a one-rank communicator (gradient buckets that
// start during backward, sync BN's kernels against the CPU sync BN), and mdq-train --gpus 1 /
// mpirun -np 1 against the plain run. Tests that need two GPUs: test_data_parallel_2gpu.cpp.
#include <cmath>
#include <string>
#include <vector>

#include "engine/dist/grad_reducer.h"
#include "engine/dist/nccl.h"
#include "engine/dist/sync_batchnorm.h"
#include "engine/nn/functional.h"
#include "engine/nn/loss.h"
#include "engine/quant/quantizer.h"
#include "engine/train_step.h"
#include "models/model_zoo.h"
#include "tests/support/run_compare.h"
#include "tests/support/testing.h"
#include "tests/support/toy_training.h"

using namespace mdq;
using mdq::testing::random_tensor;
using mdq::testing::require_close;

namespace {

dist::Communicator& one_rank_nccl() {
  static std::unique_ptr<dist::Communicator> c = dist::make_nccl_communicator(dist::NcclSetup{});
  return *c;
}

std::vector<Tensor> grads_of(const std::vector<nn::ParamRef>& params) {
  std::vector<Tensor> g;
  for (const nn::ParamRef& p : params) g.push_back(p.var.grad().clone());
  return g;
}

}  // namespace

TEST_CASE("gradient buckets over a one-rank NCCL communicator start during backward and keep the grads") {
  if (!dist::nccl_built()) {
    WARN("skipped: mdq was built without NCCL");
    return;
  }
  models::ModelOptions mo;
  mo.num_classes = 10;
  mo.in_channels = 1;
  mo.image_size = 28;
  auto model = models::make_model("smallcnn", mo);
  model->to(Device::CUDA);
  const Tensor images = random_tensor({16, 1, 28, 28}, 5, -1.f, 1.f, Device::CUDA);
  std::vector<int32_t> y(16);
  for (int i = 0; i < 16; ++i) y[static_cast<size_t>(i)] = i % 10;
  const Tensor labels = Tensor::from_vector_i32(y, {16}, Device::CUDA);
  auto step = [&] { backward(nn::cross_entropy(model->forward(Var(images)), labels)); };
  const std::vector<nn::ParamRef> params = model->parameters();

  step();
  const std::vector<Tensor> expected = grads_of(params);
  for (const nn::ParamRef& p : params) p.var.zero_grad();

  dist::BucketCaps caps;
  caps.cap_bytes = 16 << 10;  // small buckets, so that several exist in this small network
  caps.first_cap_bytes = 4 << 10;
  dist::GradReducer reducer(params, one_rank_nccl(), caps);
  REQUIRE(reducer.layout().buckets.size() > 2);
  for (int s = 0; s < 2; ++s) {
    step();
    reducer.finish();
    const std::vector<Tensor> got = grads_of(params);
    for (size_t k = 0; k < params.size(); ++k) require_close(got[k], expected[k], 1e-6f, 1e-5f, params[k].name);
    for (const nn::ParamRef& p : params) p.var.zero_grad();
  }
  // The first step learns the hook counts and starts every bucket at finish(); later ones start
  // them while backward runs.
  REQUIRE(reducer.started_during_backward() == static_cast<int64_t>(reducer.layout().buckets.size()));
}

TEST_CASE("a data-parallel step (one NCCL rank, buckets during backward) replayed from a CUDA graph equals the eager one") {
  if (!dist::nccl_built()) {
    WARN("skipped: mdq was built without NCCL");
    return;
  }
  // Two copies of one network, each with its own buckets on the one-rank communicator: one steps
  // eagerly, one is captured after two eager steps (the buckets' copies and the side stream's
  // all-reduces inside the graph) and replayed. A one-rank mean is exact, so the two stay equal
  // bit for bit, step after step.
  struct Run {
    std::shared_ptr<nn::Module> model;
    std::unique_ptr<quant::Quantizer> quantizer;
    std::unique_ptr<dist::GradReducer> reducer;
    std::unique_ptr<TrainStep> step;
  };
  auto make_run = [](bool graph) {
    models::ModelOptions mo;
    mo.in_channels = 1;
    mo.image_size = 28;
    mo.seed = 3;
    Run r;
    r.model = models::make_model("smallcnn", mo);
    r.model->to(Device::CUDA);
    r.model->train();
    quant::QuantConfig qc;
    qc.interval = 2;
    r.quantizer = std::make_unique<quant::Quantizer>(r.model->parameters(), qc);
    dist::BucketCaps caps;
    caps.cap_bytes = 16 << 10;
    caps.first_cap_bytes = 4 << 10;
    r.reducer = std::make_unique<dist::GradReducer>(r.model->parameters(), one_rank_nccl(), caps);
    TrainStepOptions so;
    so.cuda_graph = graph;
    dist::GradReducer* reducer = r.reducer.get();
    so.after_backward = [reducer] { reducer->finish(); };
    so.after_replay = [] { one_rank_nccl().watch_replay("a replayed step (test)"); };
    r.step = std::make_unique<TrainStep>(*r.model, *r.quantizer, so);
    return r;
  };
  Run eager = make_run(false), graph = make_run(true);
  REQUIRE(graph.reducer->layout().buckets.size() > 2);
  for (int k = 0; k < 7; ++k) {
    const Tensor images = random_tensor({16, 1, 28, 28}, 40 + k, -1.f, 1.f, Device::CUDA);
    const Tensor labels = testing::random_labels(16, 10, 60 + k).cuda();
    eager.step->run(images, labels, 1e-3f);
    graph.step->run(images, labels, 1e-3f);
    INFO("step " << k);
    REQUIRE(graph.step->graphed() == (k >= 2));
    REQUIRE(testing::bits(graph.step->loss()) == testing::bits(eager.step->loss()));
  }
  const std::vector<nn::ParamRef> pe = eager.model->parameters(), pg = graph.model->parameters();
  for (size_t i = 0; i < pe.size(); ++i) {
    INFO("parameter " << pe[i].name);
    REQUIRE(testing::bits(pg[i].var.value()) == testing::bits(pe[i].var.value()));
  }
  REQUIRE(eager.quantizer->state_metadata() == graph.quantizer->state_metadata());
}

TEST_CASE("sync BN kernels on the GPU (one NCCL rank) match the CPU sync BN, forward and backward, with and without a fused ReLU") {
  if (!dist::nccl_built()) {
    WARN("skipped: mdq was built without NCCL");
    return;
  }
  auto cpu = dist::make_single_process_communicator();
  const Tensor x = random_tensor({6, 7, 5, 5}, 21, -2.f, 3.f), g = random_tensor({6, 7, 5, 5}, 22);
  const Tensor w = random_tensor({7}, 23, 0.5f, 1.5f), b = random_tensor({7}, 24);
  struct Run {
    Tensor out, rm, rv, dx, dw, db;
  };
  auto run = [&](dist::Communicator& c, Device d, bool relu) {
    Run r{Tensor(), Tensor::full({7}, 0.5f, d), Tensor::full({7}, 2.f, d), Tensor(), Tensor(), Tensor()};
    Var xv(x.to(d), true), wv(w.to(d), true), bv(b.to(d), true);
    Var out = dist::sync_batch_norm(c, xv, wv, bv, r.rm, r.rv, 0.1f, 1e-5f, relu);
    backward(nn::sum(nn::mul(out, Var(g.to(d)))));
    r.out = out.value().cpu();
    r.dx = xv.grad().cpu();
    r.dw = wv.grad().cpu();
    r.db = bv.grad().cpu();
    return r;
  };
  // The ReLU's kink: both backends must take the same side, so no output before it lies within
  // their last-bit differences of 0.
  for (float v : run(*cpu, Device::CPU, false).out.to_vector()) REQUIRE(std::fabs(v) > 1e-4f);
  for (bool relu : {false, true}) {
    INFO((relu ? "relu" : "plain"));
    const Run want = run(*cpu, Device::CPU, relu), got = run(one_rank_nccl(), Device::CUDA, relu);
    require_close(got.out, want.out, 1e-5f, 1e-5f, "output");
    require_close(got.rm.cpu(), want.rm, 1e-6f, 1e-5f, "running_mean");
    require_close(got.rv.cpu(), want.rv, 1e-6f, 1e-5f, "running_var");
    require_close(got.dx, want.dx, 1e-5f, 1e-4f, "grad_input");
    require_close(got.dw, want.dw, 1e-4f, 1e-4f, "grad_weight");
    require_close(got.db, want.db, 1e-4f, 1e-4f, "grad_bias");
  }
}

TEST_CASE("mdq-train --gpus 1 and mpirun -np 1 run the NCCL path and train like the plain run") {
  if (!dist::nccl_built()) {
    WARN("skipped: mdq was built without NCCL");
    return;
  }
  // One rank: the mean over ranks is the gradient itself, and every process takes cuDNN's
  // heuristic algorithms (require_gpu_ranks_train_like_one_gpu), so the runs agree to kernel
  // rounding. (With timed algorithm choices, mpirun -np 1 once ended 6.2x (1e-4, 1e-3) away on
  // an H200: Adam turns a last-bit difference in a near-zero gradient into a step of lr.)
  testing::require_gpu_ranks_train_like_one_gpu(1, " --gpus 1", "", 1e-5f, 1e-4f);
}

// Data-parallel scaling: training steps of a model on synthetic CIFAR-sized batches (no data
// loading, so the GPUs and the communication are what is measured) on N ranks.
//   bench_data_parallel --gpus N [--model resnet18] [--method md-tanh-s] [--batches 128,512]
//                       [--steps 30] [--rounds 5] [--precision fp32|tf32|bf16] [--cuda-graph on|off]
//   mpirun -np N bench_data_parallel [the same flags; --device cpu for CPU ranks]
// For each batch per rank B, rank 0 prints:
//   - training images/s over all ranks (forward, backward, gradient means, MD update) and per rank;
//   - the same step without any communication on the same ranks, and the difference: the
//     all-reduce time that backward did not hide (with the bucket packing copies). The two are
//     timed in --rounds alternating windows (the order swapped every round) and the medians are
//     printed: at batch 128 single windows of the same step differed by 5-10% on an H200;
//   - the all-reduce of the model's gradient size G alone: time, algorithm bandwidth 4G/t and bus
//     bandwidth algbw * 2(N-1)/N (the nccl-tests convention, comparable to the link's peak).
// The step is engine/train_step.h's, replayed from a CUDA graph as mdq-train runs it (both
// versions, with and without the gradient means); --cuda-graph off times eager steps.
// benchmarks/run_data_parallel_scaling.sh runs it on 1..N GPUs.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/dist/grad_reducer.h"
#include "engine/dist/join.h"
#include "engine/dist/local_launcher.h"
#include "engine/precision.h"
#include "engine/quant/quantizer.h"
#include "engine/train_step.h"
#include "models/model_zoo.h"

using namespace mdq;

namespace {

struct Options {
  int gpus = 0;
  std::string model = "resnet18", method = "md-tanh-s", device = "auto", precision = "fp32";
  std::vector<int64_t> batches = {128, 512};
  int steps = 30, rounds = 5;
  bool cuda_graph = true;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--gpus") o.gpus = std::atoi(v.c_str());
    else if (k == "--model") o.model = v;
    else if (k == "--method") o.method = v;
    else if (k == "--device") o.device = v;
    else if (k == "--precision") o.precision = v;
    else if (k == "--steps") o.steps = std::atoi(v.c_str());
    else if (k == "--rounds") o.rounds = std::atoi(v.c_str());
    else if (k == "--cuda-graph" && (v == "on" || v == "off")) o.cuda_graph = v == "on";
    else if (k == "--batches") {
      o.batches.clear();
      std::stringstream s(v);
      for (std::string b; std::getline(s, b, ',');) o.batches.push_back(std::atoll(b.c_str()));
    } else {
      std::fprintf(stderr, "bench_data_parallel: unknown flag %s (see the comment at the top of the source)\n", k.c_str());
      std::exit(2);
    }
  }
  if (o.steps < 1 || o.rounds < 1) {
    std::fprintf(stderr, "bench_data_parallel: --steps and --rounds must be at least 1\n");
    std::exit(2);
  }
  return o;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

int run_rank(const Options& o) {
  const Device device = o.device == "cpu" || (o.device == "auto" && !cuda_available()) ? Device::CPU : Device::CUDA;
  set_precision(parse_precision(o.precision));
  std::unique_ptr<dist::Communicator> comm = dist::join_ranks(device, 300);
  if (!comm) {
    std::fprintf(stderr, "bench_data_parallel: run with --gpus N, or under mpirun -np N\n");
    return 2;
  }
  const bool root = comm->rank() == 0;
  const int n = comm->size();
  if (root)
    std::printf("bench_data_parallel: %s %s, %s, %s, %d steps, %s\n", o.model.c_str(), o.method.c_str(),
                comm->describe().c_str(), o.precision.c_str(), o.steps,
                o.cuda_graph ? "steps replayed from CUDA graphs" : "eager steps");
  auto sync = [&] {
    cuda_synchronize();
    comm->barrier();  // every rank's window ends together: rank 0 measures the slowest
  };
  for (int64_t batch : o.batches) {
    models::ModelOptions mo;
    mo.seed = 1;
    auto model = models::make_model(o.model, mo);
    model->to(device);
    model->train();
    quant::QuantConfig qc;
    qc.method = o.method;
    quant::Quantizer q(model->parameters(), qc);
    const Tensor images = Tensor::uniform({batch, 3, 32, 32}, -1.f, 1.f, 100 + static_cast<uint64_t>(comm->rank()), device);
    std::vector<int32_t> y(static_cast<size_t>(batch));
    for (size_t i = 0; i < y.size(); ++i) y[i] = static_cast<int32_t>(i % 10);
    const Tensor labels = Tensor::from_vector_i32(y, {batch}, device);
    auto seconds_per_step = [&](dist::GradReducer* reducer) {
      TrainStepOptions so;
      so.cuda_graph = o.cuda_graph;
      if (reducer) {
        so.after_backward = [reducer] { reducer->finish(); };
        so.after_replay = [&] { comm->watch_replay("a replayed step (bench_data_parallel)"); };
      }
      TrainStep train_step(*model, q, so);
      auto step = [&] { train_step.run(images, labels, 1e-3f); };
      // warm-up: the reducer's first, calibrating step; with graphs, two eager steps and the capture
      for (int i = 0; i < 5; ++i) step();
      sync();
      const double t0 = now_s();
      for (int i = 0; i < o.steps; ++i) step();
      sync();
      return (now_s() - t0) / o.steps;
    };
    std::vector<double> alone_s, together_s, hidden_not_s;
    size_t buckets = 0;
    for (int r = 0; r < o.rounds; ++r) {
      double a = 0, t = 0;
      auto with_reducer = [&] {
        dist::GradReducer reducer(model->parameters(), *comm);
        buckets = reducer.layout().buckets.size();
        t = seconds_per_step(&reducer);
      };
      if (r % 2 == 0) {
        a = seconds_per_step(nullptr);
        with_reducer();
      } else {
        with_reducer();
        a = seconds_per_step(nullptr);
      }
      alone_s.push_back(a);
      together_s.push_back(t);
      hidden_not_s.push_back(t - a);
    }
    const double alone = median(alone_s), together = median(together_s), not_hidden = median(hidden_not_s);
    const int64_t g = model->parameter_count();
    Tensor grads = Tensor::zeros({g}, DType::F32, device);
    for (int i = 0; i < 3; ++i) comm->all_reduce_sum(grads.data<float>(), g);
    sync();
    const int reps = 20;
    const double t0 = now_s();
    for (int i = 0; i < reps; ++i) comm->all_reduce_sum(grads.data<float>(), g);
    sync();
    const double ar = (now_s() - t0) / reps;
    const double algbw = 4.0 * static_cast<double>(g) / ar / 1e9;
    if (root) {
      auto range = [](const std::vector<double>& v) {
        const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
        char s[64];
        std::snprintf(s, sizeof s, "%.2f-%.2f", *lo * 1e3, *hi * 1e3);
        return std::string(s);
      };
      std::printf("  batch/rank %lld: %.0f img/s (%.0f per rank), step %.2f ms, without communication %.2f ms -> "
                  "all-reduce not hidden by backward %.2f ms (%.1f%%), %zu buckets; medians of %d rounds (step %s ms, "
                  "without %s ms)\n",
                  static_cast<long long>(batch), n * batch / together, batch / together, together * 1e3, alone * 1e3,
                  not_hidden * 1e3, 100.0 * not_hidden / together, buckets, o.rounds, range(together_s).c_str(),
                  range(alone_s).c_str());
      std::printf("  all-reduce of the gradients alone (%.2fM floats, %.1f MB): %.3f ms, algbw %.1f GB/s, busbw %.1f GB/s\n",
                  g / 1e6, 4e-6 * g, ar * 1e3, algbw, algbw * 2.0 * (n - 1) / n);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  auto guarded = [&](int) {
    try {
      return run_rank(o);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench_data_parallel: error: %s\n", e.what());
      return 2;
    }
  };
  if (o.gpus > 0) return dist::run_local_ranks(o.gpus, guarded);
  return guarded(0);
}

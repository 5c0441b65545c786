// bench_train_step: mdq's whole training step, as mdq-train runs it (engine/train_step.h: forward,
// nn::cross_entropy, backward, the MD-tanh-S quantizer's Adam step, zero_grad; on the GPU replayed
// from a CUDA graph), on synthetic CIFAR-shaped data that already lives on the GPU, so the loader
// is not measured. benchmarks/pytorch_train_step.py
// times the same networks and method in PyTorch; scripts/train-step-vs-pytorch.sh runs both.
//
//   bench_train_step [--models resnet18,vgg16,mobilenetv2] [--batches 128,512]
//                    [--precisions fp32,tf32,bf16] [--steps 30] [--warmup 5] [--device cuda|cpu]
//                    [--cuda-graph both|on|off]
//
// One line per configuration, key=value so that scripts can read it:
//   train-step impl=mdq model=resnet18 batch=128 precision=bf16 img_per_s=... ms_per_step=...
//     peak_reserved_mib=... peak_in_use_mib=... allocs_per_step=... params=... cuda_graph=on
// impl=mdq is the step as mdq-train runs it (CUDA graph on); with --cuda-graph both (the default)
// each configuration is also timed eagerly on the GPU, as impl=mdq-eager.
// Memory comes from the engine's caching allocator, which only grows between cache releases:
//   peak_reserved_mib  every block it got from cudaMalloc for this configuration (the cache is
//                      released before each one): an upper bound of the bytes in use at any time,
//                      comparable to torch.cuda.max_memory_reserved;
//   peak_in_use_mib    the most bytes in use at once over the warm-up and timed steps (the
//                      allocator's high-water mark since the configuration began), comparable to
//                      torch.cuda.max_memory_allocated.
// Neither counts the cuDNN/cuBLAS workspace (the engine allocates it outside the cache).
// allocs_per_step counts tensors allocated per timed step (from the cache, not cudaMalloc).
// The timed steps are the profiler's capture range (cudaProfilerStart/Stop), so that
// scripts/profile-train-step.sh sees them alone. Without a GPU it says so and exits 0; --device
// cpu runs the same loop on the CPU (to check the benchmark itself); peak_in_use_mib is then the
// high-water mark of live CPU tensors over the configuration (engine/storage.h).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <sstream>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/device.h"
#include "engine/nn/loss.h"
#include "engine/ops/loss.h"
#include "engine/precision.h"
#include "engine/quant/quantizer.h"
#include "engine/storage.h"
#include "engine/train_step.h"
#include "models/model_zoo.h"
#ifdef MDQ_HAS_CUDA
#include <cuda_profiler_api.h>
#endif

using namespace mdq;

namespace {

struct Options {
  std::vector<std::string> models = {"resnet18", "vgg16", "mobilenetv2"};
  std::vector<std::string> batches = {"128", "512"};
  std::vector<std::string> precisions = {"fp32", "tf32", "bf16"};
  int steps = 30, warmup = 5;
  Device device = Device::CUDA;
  std::vector<bool> graph_modes = {true, false};
};

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

[[noreturn]] void usage_error(const std::string& what) {
  std::fprintf(stderr, "bench_train_step: %s (flags: --models, --batches, --precisions, --steps, --warmup, --device, --cuda-graph)\n",
               what.c_str());
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i += 2) {
    const std::string k = argv[i];
    if (i + 1 >= argc) usage_error("flag " + k + " needs a value");
    const std::string v = argv[i + 1];
    if (k == "--models") o.models = split_commas(v);
    else if (k == "--batches") o.batches = split_commas(v);
    else if (k == "--precisions") o.precisions = split_commas(v);
    else if (k == "--steps") o.steps = std::atoi(v.c_str());
    else if (k == "--warmup") o.warmup = std::atoi(v.c_str());
    else if (k == "--device" && (v == "cuda" || v == "cpu")) o.device = v == "cpu" ? Device::CPU : Device::CUDA;
    else if (k == "--cuda-graph" && (v == "both" || v == "on" || v == "off"))
      o.graph_modes = v == "both" ? std::vector<bool>{true, false} : std::vector<bool>{v == "on"};
    else usage_error("unknown flag or value: " + k + " " + v);
  }
  if (o.steps < 1 || o.warmup < 1) usage_error("--steps and --warmup must be at least 1");
  for (const std::string& b : o.batches)
    if (std::atoi(b.c_str()) < 1) usage_error("batch '" + b + "' is not a positive number");
  for (const std::string& p : o.precisions) parse_precision(p);  // throws naming a bad one
  return o;
}

// impl= of a configuration's line: the eager GPU step apart, so scripts compare mdq-train's.
const char* impl_name(bool graph, Device device) { return device == Device::CUDA && !graph ? "mdq-eager" : "mdq"; }

double mib(size_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

size_t allocator_held(const CudaAllocatorStats& s) { return s.bytes_in_use + s.bytes_cached; }
size_t grown_by(size_t now, size_t start) { return now > start ? now - start : 0; }

// Marks the timed steps for nsys --capture-range=cudaProfilerApi and ncu --profile-from-start off
// (no-ops without a profiler).
void profiler_range(bool start) {
#ifdef MDQ_HAS_CUDA
  if (start) (void)cudaProfilerStart();
  else (void)cudaProfilerStop();
#else
  (void)start;
#endif
}

// One configuration: a fresh model, quantizer and batch; warm-up steps (cuDNN's algorithm search,
// the allocator's cache filling), then timed steps between two synchronisations.
void run(const Options& o, const std::string& model_name, int64_t batch, const std::string& precision, bool graph) {
  set_precision(parse_precision(precision));
  const bool gpu = o.device == Device::CUDA;
  if (gpu) cuda_allocator_release_cache();  // so that this configuration's high-water mark starts at zero
  if (gpu) cuda_allocator_reset_peak();
  const CudaAllocatorStats before = cuda_allocator_stats();
  const HostTensorMemory host_before = host_tensor_memory();
  host_tensor_memory_reset_peak();

  models::ModelOptions mo;  // CIFAR variant: 3×32×32 input, 10 classes, BN without affine
  mo.seed = 1;
  auto model = models::make_model(model_name, mo);
  model->to(o.device);
  model->train();
  quant::QuantConfig qc;  // the trainer's defaults: md-tanh-s, binary, Adam
  quant::Quantizer quantizer(model->parameters(), qc);
  const Tensor images = Tensor::uniform({batch, 3, 32, 32}, -1.f, 1.f, 7, o.device);
  std::vector<int32_t> y(static_cast<size_t>(batch));
  for (size_t i = 0; i < y.size(); ++i) y[i] = static_cast<int32_t>(i % 10);
  const Tensor labels = Tensor::from_vector_i32(y, {batch}, o.device);

  TrainStepOptions so;
  so.cuda_graph = graph;
  TrainStep train_step(*model, quantizer, so);
  auto step = [&] { train_step.run(images, labels, 1e-3f); };
  for (int i = 0; i < o.warmup; ++i) step();
  cuda_synchronize();
  const uint64_t allocs0 = cuda_allocator_stats().allocations;
  if (gpu) profiler_range(true);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < o.steps; ++i) step();
  cuda_synchronize();
  if (gpu) profiler_range(false);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / o.steps;
  ops::check_pending_label_errors();
  const CudaAllocatorStats after = cuda_allocator_stats();

  const bool replayed = train_step.graphed();
  std::printf("train-step impl=%s model=%s batch=%lld precision=%s img_per_s=%.0f ms_per_step=%.3f",
              impl_name(graph, o.device), model_name.c_str(),
              static_cast<long long>(batch), precision.c_str(), batch / seconds, seconds * 1e3);
  if (gpu)
    std::printf(" peak_reserved_mib=%.1f peak_in_use_mib=%.1f allocs_per_step=%.0f",
                mib(grown_by(allocator_held(after), allocator_held(before))),
                mib(grown_by(after.peak_bytes_in_use, before.bytes_in_use)),
                static_cast<double>(after.allocations - allocs0) / o.steps);
  else  // CPU tensors: no cache, so reserved = in use; the high-water mark of live CPU tensors
    std::printf(" peak_reserved_mib=n/a peak_in_use_mib=%.1f allocs_per_step=n/a",
                mib(grown_by(host_tensor_memory().peak_bytes_in_use, host_before.bytes_in_use)));
  std::printf(" params=%lld cuda_graph=%s\n", static_cast<long long>(model->parameter_count()), replayed ? "on" : "off");
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    o = parse(argc, argv);
  } catch (const std::exception& e) {
    usage_error(e.what());
  }
  if (o.device == Device::CUDA && !cuda_available()) {
    std::printf("bench_train_step: no GPU (%s); nothing to measure.\n", cuda_unavailable_reason().c_str());
    return 0;
  }
  std::printf("# bench_train_step on %s: MD-tanh-S + Adam, synthetic 3x32x32 data on the device, %d warm-up and "
              "%d timed steps per configuration\n",
              o.device == Device::CUDA ? cuda_device_name().c_str() : "the CPU", o.warmup, o.steps);
  ops::set_deferred_label_checks(true);  // as mdq-train: no stall per step for the label check
  int failed = 0;
  for (const std::string& m : o.models)
    for (const std::string& b : o.batches)
      for (const std::string& p : o.precisions)
        for (bool graph : o.graph_modes) {
          if (!graph && o.device == Device::CPU && o.graph_modes.size() > 1) continue;  // the CPU is always eager
          try {
            run(o, m, std::atoll(b.c_str()), p, graph);
          } catch (const std::exception& e) {  // e.g. out of memory: report it, measure the rest
            clear_tape();
            std::printf("train-step impl=%s model=%s batch=%s precision=%s error=\"%s\"\n", impl_name(graph, o.device),
                        m.c_str(), b.c_str(), p.c_str(), e.what());
            ++failed;
          }
        }
  return failed ? 1 : 0;
}

// mdq-infer: runs a packed model (mdq-export) on a dataset split and prints top-1/top-5 accuracy
// and images/s. Two engines:
//   float  (the default) the weights expanded to ±1 (or {-1, 0, 1}) f32 on the float engine: the
//          rounded network exactly as mdq-train evaluates it;
//   packed the network lowered onto the packed kernels (engine/infer/lower.h), each layer where
//          its input and weights let it run: W1A1 (±1 input after a sign activation, act_bits =
//          1: equal to the float engine but for rare sign flips in residual sums), W1A16 (real
//          input, weights kept packed), or the float engine's op. The summary line says which.
//          --packed-precision sets the W1A16 layers' activations:
//            split (the default): f32, each layer fed them as bf16 hi + lo (~16 significant
//            bits) against its weights packed twice, so the logits match the float engine's to
//            ~1e-5 and a top-1 class differs only on near-ties (--agree counts them); twice the
//            bf16 mode's conv work;
//            bf16: bf16 activations, 7-9x faster than float on an H200, but the rounding flips
//            the top-1 class of 0.25-0.9% of the images on the nets we measured.
//          --stem sets where the first convolution (the images' 3 channels) runs
//          (infer::LowerOptions::stem): direct: as one step into NHWC with its BN and ReLU
//          folded (and the sign after it, in W1A1 plans) where the direct kernel takes it
//          (packed::stem_conv_nhwc: f32 sums, its output rounded to bf16 only with
//          --packed-precision bf16), else on the float engine in f32 NCHW; tc: the same step
//          with its sums on tensor cores, images and weights split into bf16 hi + lo (three
//          MMAs a product, each within 3 * 2^-16 of the f32 one), on a GPU of compute capability
//          8.0 or later, elsewhere as direct; tc-bf16: as tc with images and weights rounded to
//          bf16 (one MMA a product: fastest, but the rounding flips stem signs at near-ties,
//          and a W1A1 network carries them on); auto (the default): tc today; f32 always on the
//          float engine, as mdq-train
//          evaluates it; bf16 always as one step, on cuDNN's bf16 convolution (images and
//          output rounded to bf16) where the direct kernel does not take it or
//          MDQ_STEM_DIRECT=0. The engine line says which stem ran.
// On the GPU each batch's forward (either engine) is replayed from a CUDA graph after two eager
// batches of its shape (engine/graphed_forward.h: one launch instead of one per kernel, the same
// logits bit for bit); --cuda-graph off runs every batch eagerly. The last line says which ran.
#include <chrono>
#include <map>
#include <memory>
#include <cstdio>
#include <string>
#include <vector>

#include "apps/common/builders.h"
#include "apps/common/cli.h"
#include "apps/common/evaluate.h"
#include "apps/common/packed_model.h"
#include "data/loader.h"
#include "engine/device.h"
#include "engine/autograd.h"
#include "engine/graphed_forward.h"
#include "engine/infer/lower.h"
#include "kernels/label_rank.h"
#include "models/random_rounded.h"

namespace {

using namespace mdq;

const char* kUsage =
    "usage: mdq-infer --model MODEL.mdqpack [--split test|val|train] [--data-dir DIR] [--device auto|cpu|cuda]\n"
    "                 [--batch-size N] [--engine float|packed] [--packed-precision split|bf16]\n"
    "                 [--stem auto|tc|tc-bf16|direct|f32|bf16] [--cuda-graph on|off] [--agree]\n"
    "       mdq-infer --random-model NAME [--image-size S] [--classes K] [--act-bits 32|1] [--levels 2|3]\n"
    "                 [--batches N] (and the options above but --model, --split, --data-dir)\n"
    "Runs a packed model written by mdq-export and prints its accuracy and throughput.\n"
    "--random-model NAME (resnet18, vgg16, mobilenetv2, smallcnn): instead, that network with random ±1\n"
    "         parameters ({-1, 0, 1} with --levels 3) and BatchNorm statistics that keep its activations O(1),\n"
    "         on random images (3 x S x S, S = --image-size, default 224: the ImageNet variant; 32: CIFAR's),\n"
    "         --classes outputs (default 1000), sign activations with --act-bits 1; prints the images/s of\n"
    "         --batches timed batches (default 20, after 3 untimed) and no accuracy.\n"
    "--engine float (default): the rounded network exactly as mdq-train evaluates it.\n"
    "--engine packed: weights stay packed: each layer runs W1A1 (±1 input), W1A16 (real input) or, where\n"
    "         the packed kernels do not take it, on the float engine. W1A16 activations per --packed-precision:\n"
    "         split (default): f32, fed to each layer as bf16 hi + lo (~16 significant bits): logits\n"
    "                within ~1e-5 of the largest of the float engine's, so the top-1 class differs\n"
    "                only on near-ties; twice the convolution work of bf16.\n"
    "         bf16: bf16 activations: fastest, but the rounding flips the top-1 class of ~0.3-0.9%\n"
    "                of the images.\n"
    "--stem (packed engine): where the first convolution runs.\n"
    "         direct: as one direct kernel with its BN (+ ReLU or sign) folded where the kernel takes it (f32\n"
    "                sums, in another order than the float engine's: a sign taken of them may flip at a\n"
    "                near-tie), else as f32;\n"
    "         tc: as direct, its sums on tensor cores from images and weights split into bf16 hi + lo (three\n"
    "                MMAs a product, each within 3 * 2^-16 of f32), on a GPU of compute capability 8.0 or later;\n"
    "                elsewhere exactly direct;\n"
    "         tc-bf16: as tc with images and weights rounded to bf16 (one MMA a product): fastest, but the\n"
    "                rounding flips stem signs at near-ties, which W1A1 networks carry on (top-1 agreement\n"
    "                with the float engine 26-96% on the nets we measured);\n"
    "         auto (default): tc;\n"
    "         f32: on the float engine in f32, as mdq-train evaluates it;\n"
    "         bf16: one step always, on cuDNN's bf16 tensor cores (images and output rounded to bf16) where\n"
    "                the direct kernel does not take it.\n"
    "--cuda-graph on (default) | off: on the GPU, replay each batch's forward from a CUDA graph after two\n"
    "         eager batches of its shape (one launch instead of one per kernel; the same logits); off runs\n"
    "         every batch eagerly.\n"
    "--agree: after the timed pass, count the images whose top-1 class is the same on the packed\n"
    "         kernels and on the float engine (the rounded network as mdq-train evaluates it).\n";

// The predicted class of each row of z [N][K] (kernels/label_rank.h: first maximum; -1 when a
// logit is not finite, which then agrees with nothing).
std::vector<int64_t> top1(const mdq::Tensor& z) {
  const std::vector<float> v = z.to_vector();
  const int64_t N = z.dim(0), K = z.dim(1);
  std::vector<int64_t> best(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) best[static_cast<size_t>(i)] = mdq::rank::argmax(&v[static_cast<size_t>(i * K)], K);
  return best;
}

// --agree's count: the images whose top-1 class is the same on the packed kernels and on the
// float engine (a non-finite packed row agrees with nothing).
struct Agreement {
  int64_t same = 0, total = 0;
  void add(const mdq::Tensor& packed_logits, const mdq::Tensor& float_logits) {
    const std::vector<int64_t> p = top1(packed_logits), f = top1(float_logits);
    for (size_t i = 0; i < p.size(); ++i) same += p[i] >= 0 && p[i] == f[i];
    total += static_cast<int64_t>(p.size());
  }
  void print() const {
    std::printf("packed vs float engine: the same top-1 class on %lld of %lld images (%.2f%%)\n",
                static_cast<long long>(same), static_cast<long long>(total), total ? 100.0 * same / total : 0.0);
  }
};

// --stem's value: auto is the fastest stem we have (tc); a bad value is refused naming the flag.
infer::StemPath parse_stem(const std::string& stem) {
  if (stem == "auto" || stem == "tc") return infer::StemPath::TensorCores;
  if (stem == "tc-bf16") return infer::StemPath::TensorCoresBf16;
  if (stem == "direct") return infer::StemPath::Direct;
  if (stem == "f32") return infer::StemPath::Float;
  MDQ_CHECK(stem == "bf16", "--stem must be auto, tc, tc-bf16, direct, f32 or bf16, got '" << stem << "'");
  return infer::StemPath::Bf16;
}

// How the model runs: --engine packed lowers it (infer::lower) onto plan; float leaves plan null.
// Prints the "engine:" line. --engine packed runs on CUDA, or on the CPU through the packed ops'
// reference loops (slow, for checking); a network the lowering does not cover is refused with
// the reason.
void lower_if_packed(nn::Module& model, const std::string& name, const std::string& engine,
                     const std::string& packed_precision, const std::string& stem, Device device,
                     std::unique_ptr<infer::Plan>& plan) {
  MDQ_CHECK(engine == "packed" || engine == "float", "--engine must be float or packed, got '" << engine << "'");
  const infer::PackedPrecision precision = infer::parse_packed_precision(packed_precision);
  const infer::StemPath stem_path = parse_stem(stem);
  if (engine == "float") {
    std::printf("engine: float (weights expanded to f32)\n");
    return;
  }
  std::string why;
  infer::LowerOptions options{device, precision};
  options.stem = stem_path;
  plan = infer::lower(model, options, &why);
  MDQ_CHECK(plan, "--engine packed: " << name << " cannot run packed: " << why);
  const infer::Census c = plan->census();
  const char* acts = c.w1a16_layers() == 0 ? ""
                     : precision == infer::PackedPrecision::BF16
                         ? "; W1A16 activations: bf16"
                         : "; W1A16 activations: split-bf16 (f32 as bf16 hi + lo)";
  const char* stem_ran = c.stem_tensor_cores ? (stem_path == infer::StemPath::TensorCoresBf16
                                                    ? "; stem: tensor cores (bf16 operands)"
                                                    : "; stem: tensor cores (split-bf16 operands)")
                         : c.stem_direct ? "; stem: direct kernel"
                         : stem_path == infer::StemPath::Bf16 ? "; stem: NHWC bf16" : "";
  std::printf("engine: packed (%s%s%s)\n", c.text().c_str(), acts, stem_ran);
}

// Why the forwards run eagerly ("" when they are replayed from a CUDA graph).
std::string graph_off_reason(bool cuda_graph, Device device) {
  return !cuda_graph ? "--cuda-graph off" : device != Device::CUDA ? "on the CPU" : "";
}

// --random-model's own flags, with their defaults.
const std::map<std::string, std::string> kRandomFlags = {
    {"--image-size", "224"}, {"--classes", "1000"}, {"--act-bits", "32"}, {"--levels", "2"}, {"--batches", "20"}};

// --random-model: the network with random levels (models/random_rounded.h) on random images;
// images/s over the timed batches, and with --agree the top-1 agreement with the float engine
// on every image run.
int run_random(const std::string& name, const std::map<std::string, std::string>& f, bool cuda_graph, bool agree) {
  models::ModelOptions o;
  o.image_size = static_cast<int>(app::parse_count("--image-size", f.at("--image-size")));
  o.num_classes = static_cast<int>(app::parse_count("--classes", f.at("--classes")));
  o.act_bits = static_cast<int>(app::parse_count("--act-bits", f.at("--act-bits")));
  MDQ_CHECK(o.act_bits == 1 || o.act_bits == 32, "--act-bits must be 32 or 1, got " << o.act_bits);
  const int levels = static_cast<int>(app::parse_count("--levels", f.at("--levels")));
  MDQ_CHECK(levels == 2 || levels == 3, "--levels must be 2 or 3, got " << levels);
  const int64_t batch = app::parse_count("--batch-size", f.at("--batch-size"));
  const int64_t batches = app::parse_count("--batches", f.at("--batches"));
  const Device device = app::pick_device(f.at("--device"));
  auto model = models::rounded_model(name, o, levels, 1);
  model->to(device);
  std::unique_ptr<infer::Plan> plan;
  lower_if_packed(*model, name, f.at("--engine"), f.at("--packed-precision"), f.at("--stem"), device, plan);
  GraphedForward run_once([&](const Tensor& x) { return plan ? plan->logits(x) : model->forward(Var(x)).value(); },
                          graph_off_reason(cuda_graph, device));
  const Tensor images = Tensor::uniform({batch, o.in_channels, o.image_size, o.image_size}, -2.f, 2.f, 7, device);
  for (int i = 0; i < 3; ++i) run_once(images);  // cuDNN's searches, first-use allocations, the capture
  cuda_synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  Tensor logits;
  // Replays read the graph's own input buffer, which holds these images: no copy a batch.
  const Tensor& timed = run_once.replaying() ? run_once.input() : images;
  for (int64_t i = 0; i < batches; ++i) logits = run_once(timed);
  cuda_synchronize();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s, random %s weights, %dx%dx%d images, %d classes, %s activations (%s, %s engine): "
              "%lld batches of %lld, %.3f ms a batch, %.0f images/s\n",
              name.c_str(), levels == 3 ? "ternary" : "binary", o.in_channels, o.image_size, o.image_size,
              o.num_classes, o.act_bits == 1 ? "sign" : "real", mdq::device_name(device), plan ? "packed" : "float",
              static_cast<long long>(batches), static_cast<long long>(batch), 1e3 * s / batches,
              s > 0 ? batches * batch / s : 0.0);
  std::printf("forward: %s\n", run_once.why().c_str());
  if (agree) {  // the last timed batch's packed logits against the float engine's
    Agreement a;
    a.add(logits, model->forward(Var(images)).value());
    a.print();
  }
  return 0;
}

int run(int argc, char** argv) {
  std::map<std::string, std::string> f = {{"--model", ""},         {"--split", "test"},   {"--data-dir", ""},
                                          {"--device", "auto"},     {"--batch-size", "256"}, {"--engine", "float"},
                                          {"--packed-precision", "split"}, {"--stem", "auto"}, {"--random-model", ""},
                                          {"--cuda-graph", "on"}};
  f.insert(kRandomFlags.begin(), kRandomFlags.end());
  bool agree = false;
  std::vector<std::pair<const char*, std::string*>> flags;
  for (auto& [k, v] : f) flags.push_back({k.c_str(), &v});
  if (!app::parse_flags(argc, argv, kUsage, flags, {{"--agree", &agree}})) return 0;
  MDQ_CHECK(!agree || f["--engine"] != "float",
            "--agree compares the packed kernels with the float engine, but this run has no packed engine");
  MDQ_CHECK(f["--cuda-graph"] == "on" || f["--cuda-graph"] == "off",
            "--cuda-graph must be on or off, got '" << f["--cuda-graph"] << "'");
  const bool cuda_graph = f["--cuda-graph"] == "on";
  NoGradScope no_grad;  // inference only: no backward graph recorded by the float engine's forwards
  const std::string& path = f["--model"];
  const std::string& random_model = f["--random-model"];
  MDQ_CHECK(path.empty() != random_model.empty(), "give one of --model and --random-model\n" << kUsage);
  if (!random_model.empty()) {
    MDQ_CHECK(f["--data-dir"].empty() && f["--split"] == "test",
              "--random-model runs on random images: --data-dir and --split have no meaning with it");
    return run_random(random_model, f, cuda_graph, agree);
  }
  for (const auto& [flag, default_value] : kRandomFlags)
    MDQ_CHECK(f[flag] == default_value, flag << " belongs to --random-model; a --model file holds its own network");
  app::TrainOptions o = app::read_packed_options(path);
  if (!f["--data-dir"].empty()) o.data_dir = f["--data-dir"];
  const Device device = app::pick_device(f["--device"]);
  auto ds = app::pick_split(data::load_dataset(o.dataset, o.data_dir, o.seed, o.val_fraction), f["--split"]);
  auto model = app::build_model(o, ds->info());
  app::load_packed_model(path, *model);
  model->to(device);
  model->eval();
  std::unique_ptr<infer::Plan> plan;
  lower_if_packed(*model, o.model, f["--engine"], f["--packed-precision"], f["--stem"], device, plan);
  GraphedForward forward([&](const Tensor& x) { return plan ? plan->logits(x) : model->forward(Var(x)).value(); },
                         graph_off_reason(cuda_graph, device));
  const std::string batch = f["--batch-size"], split = f["--split"];

  data::DataLoader loader(ds, app::parse_count("--batch-size", batch), false, false,
                          data::eval_augment_for(o.dataset), o.seed, device);
  auto t0 = std::chrono::steady_clock::now();
  app::EvalResult r = app::evaluate_logits([&](const Tensor& x) { return forward(x); }, loader, ds->info().num_classes);
  cuda_synchronize();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s on %s %s (%lld images, %s, %s engine): top-1 %.2f%%  top-5 %.2f%%  %.0f images/s\n",
              o.model.c_str(), o.dataset.c_str(), split.c_str(), static_cast<long long>(r.count),
              mdq::device_name(device), plan ? "packed" : "float", r.top1_pct(), r.top5_pct(),
              s > 0 ? r.count / s : 0.0);
  std::printf("forward: %s\n", forward.why().c_str());
  std::fputs(r.nonfinite_warning().c_str(), stderr);
  if (agree) {
    Agreement a;
    loader.start_epoch(0);
    data::Batch b;
    while (loader.next(b)) a.add(forward(b.images), model->forward(Var(b.images)).value());
    a.print();
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return mdq::app::run_main("mdq-infer", run, argc, argv); }

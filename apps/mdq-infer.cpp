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
//          (infer::LowerOptions::stem): auto (the default) as one step into NHWC with its BN
//          and ReLU folded (and the sign after it, in W1A1 plans) where the direct kernel takes
//          it (packed::stem_conv_nhwc: f32 sums, its output rounded to bf16 only with
//          --packed-precision bf16), else on the float engine in f32 NCHW; f32 always on the
//          float engine, as mdq-train evaluates it; bf16 always as one step, on cuDNN's bf16
//          convolution (images and output rounded to bf16) where the direct kernel does not
//          take it or MDQ_STEM_DIRECT=0.
#include <chrono>
#include <functional>
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
#include "engine/infer/lower.h"
#include "kernels/label_rank.h"

namespace {

const char* kUsage =
    "usage: mdq-infer --model MODEL.mdqpack [--split test|val|train] [--data-dir DIR] [--device auto|cpu|cuda]\n"
    "                 [--batch-size N] [--engine float|packed] [--packed-precision split|bf16] [--stem auto|f32|bf16]\n"
    "                 [--agree]\n"
    "Runs a packed model written by mdq-export and prints its accuracy and throughput.\n"
    "--engine float (default): the rounded network exactly as mdq-train evaluates it.\n"
    "--engine packed: weights stay packed: each layer runs W1A1 (±1 input), W1A16 (real input) or, where\n"
    "         the packed kernels do not take it, on the float engine. W1A16 activations per --packed-precision:\n"
    "         split (default): f32, fed to each layer as bf16 hi + lo (~16 significant bits): logits\n"
    "                within ~1e-5 of the largest of the float engine's, so the top-1 class differs\n"
    "                only on near-ties; twice the convolution work of bf16.\n"
    "         bf16: bf16 activations: fastest, but the rounding flips the top-1 class of ~0.3-0.9%\n"
    "                of the images.\n"
    "--stem (packed engine): auto (default): the first convolution as one direct kernel with its BN (+ ReLU\n"
    "         or sign) folded where the kernel takes it (f32 sums, in another order than the float engine's:\n"
    "         a sign taken of them may flip at a near-tie), else as f32; f32: on the float engine in f32, as\n"
    "         mdq-train evaluates it; bf16: one step always, on cuDNN's bf16 tensor cores (images and output\n"
    "         rounded to bf16) where the direct kernel does not take it.\n"
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

int run(int argc, char** argv) {
  using namespace mdq;
  std::string path, split = "test", data_dir, device_name = "auto", batch = "256", engine = "float";
  std::string packed_precision = "split", stem = "auto";
  bool agree = false;
  if (!app::parse_flags(argc, argv, kUsage,
                        {{"--model", &path}, {"--split", &split}, {"--data-dir", &data_dir},
                         {"--device", &device_name}, {"--batch-size", &batch}, {"--engine", &engine},
                         {"--packed-precision", &packed_precision}, {"--stem", &stem}},
                        {{"--agree", &agree}}))
    return 0;
  MDQ_CHECK(!path.empty(), "--model is required\n" << kUsage);
  MDQ_CHECK(engine == "packed" || engine == "float", "--engine must be float or packed, got '" << engine << "'");
  const infer::PackedPrecision precision = infer::parse_packed_precision(packed_precision);
  MDQ_CHECK(stem == "auto" || stem == "f32" || stem == "bf16", "--stem must be auto, f32 or bf16, got '" << stem << "'");
  app::TrainOptions o = app::read_packed_options(path);
  if (!data_dir.empty()) o.data_dir = data_dir;
  const Device device = app::pick_device(device_name);
  auto ds = app::pick_split(data::load_dataset(o.dataset, o.data_dir, o.seed, o.val_fraction), split);
  auto model = app::build_model(o, ds->info());
  app::load_packed_model(path, *model);
  model->to(device);
  model->eval();

  // --engine packed runs on CUDA, or on the CPU through the packed ops' reference loops (slow,
  // for checking); a network the lowering does not cover is refused with the reason.
  std::unique_ptr<infer::Plan> plan;
  std::function<Tensor(const Tensor&)> runner;
  if (engine == "packed") {
    std::string why;
    infer::LowerOptions options{device, precision};
    options.stem = stem == "auto" ? infer::StemPath::Direct : stem == "bf16" ? infer::StemPath::Bf16 : infer::StemPath::Float;
    plan = infer::lower(*model, options, &why);
    MDQ_CHECK(plan, "--engine packed: " << o.model << " cannot run packed: " << why);
    runner = [&](const Tensor& x) { return plan->logits(x); };
    const infer::Census c = plan->census();
    const char* acts = c.w1a16_layers() == 0 ? ""
                       : precision == infer::PackedPrecision::BF16
                           ? "; W1A16 activations: bf16"
                           : "; W1A16 activations: split-bf16 (f32 as bf16 hi + lo)";
    const char* stem_path = c.stem_direct ? "; stem: direct kernel" : options.stem == infer::StemPath::Bf16 ? "; stem: NHWC bf16" : "";
    std::printf("engine: packed (%s%s%s)\n", c.text().c_str(), acts, stem_path);
  } else {
    std::printf("engine: float (weights expanded to f32)\n");
  }

  data::DataLoader loader(ds, app::parse_count("--batch-size", batch), false, false,
                          data::eval_augment_for(o.dataset), o.seed, device);
  auto t0 = std::chrono::steady_clock::now();
  app::EvalResult r = runner ? app::evaluate_logits(runner, loader,
                                                    ds->info().num_classes)
                             : app::evaluate(*model, loader, ds->info().num_classes);
  cuda_synchronize();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s on %s %s (%lld images, %s, %s engine): top-1 %.2f%%  top-5 %.2f%%  %.0f images/s\n",
              o.model.c_str(), o.dataset.c_str(), split.c_str(), static_cast<long long>(r.count),
              mdq::device_name(device), runner ? "packed" : "float", r.top1_pct(), r.top5_pct(),
              s > 0 ? r.count / s : 0.0);
  std::fputs(r.nonfinite_warning().c_str(), stderr);
  if (agree) {
    MDQ_CHECK(runner, "--agree compares the packed kernels with the float engine, but this run has no packed engine");
    int64_t same = 0, total = 0;
    loader.start_epoch(0);
    data::Batch b;
    while (loader.next(b)) {
      const std::vector<int64_t> p = top1(runner(b.images));
      const std::vector<int64_t> f = top1(model->forward(Var(b.images)).value());
      for (size_t i = 0; i < p.size(); ++i) same += p[i] >= 0 && p[i] == f[i];
      total += static_cast<int64_t>(p.size());
    }
    std::printf("packed vs float engine: the same top-1 class on %lld of %lld images (%.2f%%)\n",
                static_cast<long long>(same), static_cast<long long>(total), total ? 100.0 * same / total : 0.0);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return mdq::app::run_main("mdq-infer", run, argc, argv); }

// mdq-eval: loads a checkpoint (last.ckpt or best.ckpt of a run) and evaluates the network on a
// split: the rounded network (E11) and, for a full training checkpoint, the projected one too.
#include <cstdio>
#include <cstring>
#include <string>

#include "apps/common/builders.h"
#include "apps/common/evaluate.h"
#include "apps/common/run_state.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "engine/device.h"
#include "engine/error.h"
#include "engine/quant/quantizer.h"

namespace {

const char* kUsage =
    "usage: mdq-eval --checkpoint FILE [--split test|val|train] [--data-dir DIR] [--device auto|cpu|cuda]\n"
    "                [--batch-size N]\n"
    "Evaluates a checkpoint written by mdq-train: top-1, top-5 and per-class accuracy.\n";

int run(int argc, char** argv) {
  std::string ckpt, split = "test", data_dir, device_name_arg = "auto";
  int64_t batch = 256;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      MDQ_CHECK(i + 1 < argc, a << " needs a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--checkpoint") ckpt = value();
    else if (a == "--split") split = value();
    else if (a == "--data-dir") data_dir = value();
    else if (a == "--device") device_name_arg = value();
    else if (a == "--batch-size") batch = std::stoll(value());
    else MDQ_FAIL("unknown option '" << a << "'\n" << kUsage);
  }
  MDQ_CHECK(!ckpt.empty(), "--checkpoint is required\n" << kUsage);
  MDQ_CHECK(split == "test" || split == "val" || split == "train", "--split must be test, val or train, got " << split);
  mdq::app::TrainOptions o = mdq::app::read_options(ckpt);
  if (!data_dir.empty()) o.data_dir = data_dir;
  mdq::Device device = device_name_arg == "cpu" ? mdq::Device::CPU
                       : (device_name_arg == "cuda" || mdq::cuda_available()) ? mdq::Device::CUDA
                                                                              : mdq::Device::CPU;
  mdq::data::Splits splits = mdq::data::load_dataset(o.dataset, o.data_dir, o.seed, o.val_fraction);
  auto ds = split == "test" ? splits.test : split == "val" ? splits.val : splits.train;
  MDQ_CHECK(ds, "split '" << split << "' does not exist for this run (val-fraction " << o.val_fraction << ")");
  const auto info = ds->info();
  auto model = mdq::app::build_model(o, info);
  model->to(device);
  mdq::data::DataLoader loader(ds, batch, false, false, mdq::data::eval_augment_for(o.dataset), o.seed, device);
  auto report = [&](const char* what, const mdq::app::EvalResult& r) {
    std::printf("%s network on %s (%lld images): top-1 %.2f%%  top-5 %.2f%%  loss %.4f\n", what, split.c_str(),
                static_cast<long long>(r.count), r.top1_pct(), r.top5_pct(), r.mean_loss());
  };
  mdq::app::EvalResult rounded;
  if (mdq::app::has_quantizer_state(ckpt)) {
    // last.ckpt: primal weights and the quantizer's stored variables; round them as E11 says.
    auto quantizer = mdq::app::build_quantizer(o, *model);
    mdq::quant::Quantizer& q = *quantizer;
    mdq::app::load_run(ckpt, o, *model, q);
    report("projected", mdq::app::evaluate(*model, loader, info.num_classes));
    q.apply_rounded();
    rounded = mdq::app::evaluate(*model, loader, info.num_classes);
  } else {
    // best.ckpt: the weights were rounded when it was written.
    mdq::app::load_weights(ckpt, *model);
    rounded = mdq::app::evaluate(*model, loader, info.num_classes);
  }
  report("rounded", rounded);
  std::printf("per-class top-1 (rounded):\n%s", rounded.per_class_report(info.class_names).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mdq-eval: error: %s\n", e.what());
    return 2;
  }
}

// mdq-eval: loads a checkpoint (last.ckpt or best.ckpt of a run) and evaluates the network on a
// split: the rounded network (E11) and, for a full training checkpoint, the projected one too.
#include <cstdio>
#include <string>

#include "apps/common/builders.h"
#include "apps/common/cli.h"
#include "apps/common/evaluate.h"
#include "apps/common/run_state.h"
#include "data/loader.h"

namespace {

const char* kUsage =
    "usage: mdq-eval --checkpoint FILE [--split test|val|train] [--data-dir DIR] [--device auto|cpu|cuda]\n"
    "                [--batch-size N]\n"
    "Evaluates a checkpoint written by mdq-train: top-1, top-5 and per-class accuracy.\n";

int run(int argc, char** argv) {
  using namespace mdq;
  std::string ckpt, split = "test", data_dir, device_name = "auto", batch = "256";
  if (!app::parse_flags(argc, argv, kUsage,
                        {{"--checkpoint", &ckpt}, {"--split", &split}, {"--data-dir", &data_dir},
                         {"--device", &device_name}, {"--batch-size", &batch}}))
    return 0;
  MDQ_CHECK(!ckpt.empty(), "--checkpoint is required\n" << kUsage);
  app::TrainOptions o = app::read_options(ckpt);
  if (!data_dir.empty()) o.data_dir = data_dir;
  const Device device = app::pick_device(device_name);
  auto ds = app::pick_split(data::load_dataset(o.dataset, o.data_dir, o.seed, o.val_fraction), split);
  const auto info = ds->info();
  auto model = app::build_model(o, info);
  model->to(device);
  data::DataLoader loader(ds, app::parse_count("--batch-size", batch), false, false,
                          data::eval_augment_for(o.dataset), o.seed, device);
  auto report = [&](const char* what, const app::EvalResult& r) {
    std::printf("%s network on %s (%lld images): top-1 %.2f%%  top-5 %.2f%%  loss %.4f\n", what, split.c_str(),
                static_cast<long long>(r.count), r.top1_pct(), r.top5_pct(), r.mean_loss());
    std::fputs(r.nonfinite_warning().c_str(), stderr);
  };
  app::EvalResult rounded;
  if (app::has_quantizer_state(ckpt)) {
    // last.ckpt: primal weights and the quantizer's stored variables; round them as E11 says.
    auto quantizer = app::build_quantizer(o, *model);
    app::load_run(ckpt, o, *model, *quantizer);
    report("projected", app::evaluate(*model, loader, info.num_classes));
    quantizer->apply_rounded();
    rounded = app::evaluate(*model, loader, info.num_classes);
  } else {
    // best.ckpt: the weights were rounded when it was written.
    app::load_weights(ckpt, *model);
    rounded = app::evaluate(*model, loader, info.num_classes);
  }
  report("rounded", rounded);
  std::printf("per-class top-1 (rounded):\n%s", rounded.per_class_report(info.class_names).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return mdq::app::run_main("mdq-eval", run, argc, argv); }

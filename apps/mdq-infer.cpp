// mdq-infer: runs a packed model (mdq-export) on a dataset split and prints top-1/top-5 accuracy
// and images/s. The bit-packed weights are expanded to ±1 (or {-1, 0, 1}) f32 when the model is
// loaded and the network runs on the float engine; running it on the packed kernels (W1A16 /
// W1A1, engine/packed) is the next step (issue #6).
#include <chrono>
#include <cstdio>
#include <string>

#include "apps/common/builders.h"
#include "apps/common/cli.h"
#include "apps/common/evaluate.h"
#include "apps/common/packed_model.h"
#include "data/loader.h"
#include "engine/device.h"

namespace {

const char* kUsage =
    "usage: mdq-infer --model MODEL.mdqpack [--split test|val|train] [--data-dir DIR] [--device auto|cpu|cuda]\n"
    "                 [--batch-size N]\n"
    "Runs a packed model written by mdq-export and prints its accuracy and throughput.\n";

int run(int argc, char** argv) {
  using namespace mdq;
  std::string path, split = "test", data_dir, device_name = "auto", batch = "256";
  if (!app::parse_flags(argc, argv, kUsage,
                        {{"--model", &path}, {"--split", &split}, {"--data-dir", &data_dir},
                         {"--device", &device_name}, {"--batch-size", &batch}}))
    return 0;
  MDQ_CHECK(!path.empty(), "--model is required\n" << kUsage);
  app::TrainOptions o = app::read_packed_options(path);
  if (!data_dir.empty()) o.data_dir = data_dir;
  const Device device = app::pick_device(device_name);
  auto ds = app::pick_split(data::load_dataset(o.dataset, o.data_dir, o.seed, o.val_fraction), split);
  auto model = app::build_model(o, ds->info());
  app::load_packed_model(path, *model);
  model->to(device);
  data::DataLoader loader(ds, app::parse_count("--batch-size", batch), false, false,
                          data::eval_augment_for(o.dataset), o.seed, device);
  auto t0 = std::chrono::steady_clock::now();
  app::EvalResult r = app::evaluate(*model, loader, ds->info().num_classes);
  cuda_synchronize();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s on %s %s (%lld images, %s): top-1 %.2f%%  top-5 %.2f%%  %.0f images/s\n", o.model.c_str(),
              o.dataset.c_str(), split.c_str(), static_cast<long long>(r.count), mdq::device_name(device),
              r.top1_pct(), r.top5_pct(), s > 0 ? r.count / s : 0.0);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return mdq::app::run_main("mdq-infer", run, argc, argv); }

// mdq-infer: runs a packed model (mdq-export) on a dataset split and prints top-1/top-5 accuracy
// and images/s. The bit-packed weights are expanded to ±1 (or {-1, 0, 1}) f32 when the model is
// loaded and the network runs on the float engine; running it on the packed kernels (W1A16 /
// W1A1, engine/packed) is the next step (issue #6).
#include <chrono>
#include <cstdio>
#include <string>

#include "apps/common/builders.h"
#include "apps/common/evaluate.h"
#include "apps/common/packed_model.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "engine/device.h"
#include "engine/error.h"

namespace {

const char* kUsage =
    "usage: mdq-infer --model MODEL.mdqpack [--split test|val|train] [--data-dir DIR] [--device auto|cpu|cuda]\n"
    "                 [--batch-size N]\n"
    "Runs a packed model written by mdq-export and prints its accuracy and throughput.\n";

int run(int argc, char** argv) {
  std::string path, split = "test", data_dir, device_arg = "auto";
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
    } else if (a == "--model") path = value();
    else if (a == "--split") split = value();
    else if (a == "--data-dir") data_dir = value();
    else if (a == "--device") device_arg = value();
    else if (a == "--batch-size") batch = std::stoll(value());
    else MDQ_FAIL("unknown option '" << a << "'\n" << kUsage);
  }
  MDQ_CHECK(!path.empty(), "--model is required\n" << kUsage);
  MDQ_CHECK(split == "test" || split == "val" || split == "train", "--split must be test, val or train, got " << split);
  MDQ_CHECK(device_arg == "auto" || device_arg == "cpu" || device_arg == "cuda",
            "--device must be auto, cpu or cuda, got " << device_arg);
  mdq::app::TrainOptions o = mdq::app::read_packed_options(path);
  if (!data_dir.empty()) o.data_dir = data_dir;
  const mdq::Device device =
      device_arg == "cpu" ? mdq::Device::CPU
      : (device_arg == "cuda" || mdq::cuda_available()) ? mdq::Device::CUDA : mdq::Device::CPU;
  mdq::data::Splits splits = mdq::data::load_dataset(o.dataset, o.data_dir, o.seed, o.val_fraction);
  auto ds = split == "test" ? splits.test : split == "val" ? splits.val : splits.train;
  MDQ_CHECK(ds, "split '" << split << "' does not exist for this model's run (val-fraction " << o.val_fraction << ")");
  auto model = mdq::app::build_model(o, ds->info());
  mdq::app::load_packed_model(path, *model);
  model->to(device);
  mdq::data::DataLoader loader(ds, batch, false, false, mdq::data::eval_augment_for(o.dataset), o.seed, device);
  auto t0 = std::chrono::steady_clock::now();
  mdq::app::EvalResult r = mdq::app::evaluate(*model, loader, ds->info().num_classes);
  mdq::cuda_synchronize();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s on %s %s (%lld images, %s): top-1 %.2f%%  top-5 %.2f%%  %.0f images/s\n", o.model.c_str(),
              o.dataset.c_str(), split.c_str(), static_cast<long long>(r.count), mdq::device_name(device),
              r.top1_pct(), r.top5_pct(), s > 0 ? r.count / s : 0.0);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mdq-infer: error: %s\n", e.what());
    return 2;
  }
}

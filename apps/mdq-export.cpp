// mdq-export: writes the rounded network of a run (best.ckpt) as a packed model file: binary
// weights as bits, ternary as two bit planes (32x smaller than f32), with magic, version and
// checksum. mdq-infer runs it.
#include <sys/stat.h>

#include <cstdio>
#include <string>

#include "apps/common/builders.h"
#include "apps/common/cli.h"
#include "apps/common/packed_model.h"
#include "apps/common/run_state.h"

namespace {

const char* kUsage =
    "usage: mdq-export --checkpoint RUN/best.ckpt --out MODEL.mdqpack\n"
    "Packs the rounded network saved by mdq-train (best.ckpt) into a bit-packed model file.\n";

long long file_size(const std::string& p) {
  struct stat st{};
  return stat(p.c_str(), &st) == 0 ? static_cast<long long>(st.st_size) : -1;
}

int run(int argc, char** argv) {
  using namespace mdq;
  std::string ckpt, out;
  if (!app::parse_flags(argc, argv, kUsage, {{"--checkpoint", &ckpt}, {"--out", &out}})) return 0;
  MDQ_CHECK(!ckpt.empty() && !out.empty(), "--checkpoint and --out are required\n" << kUsage);
  MDQ_CHECK(!app::has_quantizer_state(ckpt),
            ckpt << " is a full training checkpoint (last.ckpt); export the rounded network in best.ckpt");
  app::TrainOptions o = app::read_options(ckpt);
  auto model = app::build_model(o, data::standard_info(o.dataset));
  app::load_weights(ckpt, *model);
  app::PackedStats s = app::save_packed_model(out, o, *model);
  std::printf("%s: %s, %lld binary and %lld ternary weights packed, %lld values kept in f32\n", out.c_str(),
              o.model.c_str(), static_cast<long long>(s.binary_params), static_cast<long long>(s.ternary_params),
              static_cast<long long>(s.float_values));
  std::printf("file size %lld bytes (checkpoint %lld bytes)\n", file_size(out), file_size(ckpt));
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return mdq::app::run_main("mdq-export", run, argc, argv); }

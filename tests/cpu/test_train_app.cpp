// mdq-train end to end on a tiny synthetic Fashion-MNIST-format dataset, on the CPU: the CLI's
// errors, checkpoint round trip and refusal of damaged files, and resume == uninterrupted run.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "apps/common/builders.h"
#include "apps/common/options.h"
#include "apps/common/packed_model.h"
#include "apps/common/run_state.h"
#include "data/dataset.h"
#include "apps/common/trainer.h"
#include "engine/checkpoint.h"
#include "engine/random.h"
#include "tests/support/testing.h"

using namespace mdq;

namespace {

void put_be32(std::ofstream& f, uint32_t v) {
  unsigned char b[4] = {static_cast<unsigned char>(v >> 24), static_cast<unsigned char>(v >> 16),
                        static_cast<unsigned char>(v >> 8), static_cast<unsigned char>(v)};
  f.write(reinterpret_cast<const char*>(b), 4);
}

// A learnable toy problem in idx format: class c has a bright 7×7 square at position c.
void write_idx_pair(const std::string& dir, const std::string& prefix, int count, uint64_t seed) {
  std::ofstream img(dir + "/" + prefix + "-images-idx3-ubyte", std::ios::binary);
  std::ofstream lab(dir + "/" + prefix + "-labels-idx1-ubyte", std::ios::binary);
  put_be32(img, 0x00000803);
  put_be32(img, static_cast<uint32_t>(count));
  put_be32(img, 28);
  put_be32(img, 28);
  put_be32(lab, 0x00000801);
  put_be32(lab, static_cast<uint32_t>(count));
  Rng rng(seed);
  for (int i = 0; i < count; ++i) {
    int c = static_cast<int>(rng.below(4));
    unsigned char pix[28 * 28];
    for (auto& p : pix) p = static_cast<unsigned char>(rng.below(60));
    int r0 = (c / 2) * 14 + 3, c0 = (c % 2) * 14 + 3;
    for (int r = 0; r < 7; ++r)
      for (int k = 0; k < 7; ++k) pix[(r0 + r) * 28 + c0 + k] = 250;
    img.write(reinterpret_cast<const char*>(pix), sizeof pix);
    unsigned char l = static_cast<unsigned char>(c);
    lab.write(reinterpret_cast<const char*>(&l), 1);
  }
}

std::string make_dataset() {
  static std::string dir;
  if (!dir.empty()) return dir;
  char tmpl[] = "/tmp/mdq-train-test-XXXXXX";
  dir = mkdtemp(tmpl);
  write_idx_pair(dir, "train", 320, 1);
  write_idx_pair(dir, "t10k", 96, 2);
  return dir;
}

app::TrainOptions tiny_run(const std::string& out) {
  app::TrainOptions o;
  o.model = "smallcnn";
  o.dataset = "fashion-mnist";
  o.data_dir = make_dataset();
  o.batch_size = 32;
  o.lr = 3e-3f;
  o.beta_interval = 3;
  o.beta_rho = 1.1f;
  o.device = "cpu";
  o.out = out;
  o.eval_every = 3;
  o.quiet = true;
  o.workers = 2;
  return o;
}

std::string binary(const char* name) {
  const char* dir = std::getenv("MDQ_BINARY_DIR");
  return std::string(dir ? dir : ".") + "/" + name;
}

int run_command(const std::string& cmd, std::string& output) {
  std::string full = cmd + " > /tmp/mdq-cli-out.txt 2>&1";
  int rc = std::system(full.c_str());
  std::ifstream f("/tmp/mdq-cli-out.txt");
  output.assign(std::istreambuf_iterator<char>(f), {});
  return WEXITSTATUS(rc);
}

}  // namespace

TEST_CASE("mdq-train --help works and bad input exits non-zero with a clear message") {
  std::string out;
  REQUIRE(run_command(binary("mdq-train") + " --help", out) == 0);
  REQUIRE(out.find("--beta-rho") != std::string::npos);
  REQUIRE(run_command(binary("mdq-train") + " --no-such-flag 1", out) != 0);
  REQUIRE(out.find("unknown option 'no-such-flag'") != std::string::npos);
  REQUIRE(run_command(binary("mdq-train") + " --model resnet99 --dataset fashion-mnist --data-dir " + make_dataset() +
                          " --iters 1 --device cpu --out /tmp/mdq-cli-run",
                      out) != 0);
  REQUIRE(out.find("unknown model 'resnet99'") != std::string::npos);
  REQUIRE(run_command(binary("mdq-train") + " --dataset fashion-mnist --data-dir /nonexistent/dir --iters 1", out) != 0);
  REQUIRE(out.find("/nonexistent/dir") != std::string::npos);
  REQUIRE(run_command(binary("mdq-train") + " --iters 5 --epochs 2", out) != 0);
  REQUIRE(out.find("conflict") != std::string::npos);
}

TEST_CASE("resume continues bit for bit, and damaged checkpoints are refused") {
  app::TrainOptions whole = tiny_run("/tmp/mdq-test-whole");
  whole.iters = 12;
  app::train(whole);

  app::TrainOptions part = tiny_run("/tmp/mdq-test-part");
  part.iters = 6;
  app::train(part);
  part.iters = 12;
  part.resume = true;
  app::train(part);

  Checkpoint a = load_checkpoint("/tmp/mdq-test-whole/last.ckpt");
  Checkpoint b = load_checkpoint("/tmp/mdq-test-part/last.ckpt");
  REQUIRE(a.tensors.size() == b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    INFO(a.tensors[i].first);
    REQUIRE(a.tensors[i].first == b.tensors[i].first);
    if (a.tensors[i].second.dtype() == DType::F32)
      REQUIRE(a.tensors[i].second.to_vector() == b.tensors[i].second.to_vector());
  }

  // A truncated copy and a bit-flipped copy are both refused, naming the problem.
  std::ifstream in("/tmp/mdq-test-whole/last.ckpt", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  std::ofstream("/tmp/mdq-test-trunc.ckpt", std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  std::string flipped = bytes;
  flipped[flipped.size() / 2] ^= 0x10;
  std::ofstream("/tmp/mdq-test-flip.ckpt", std::ios::binary).write(flipped.data(), static_cast<std::streamsize>(flipped.size()));
  REQUIRE_THROWS_WITH(load_checkpoint("/tmp/mdq-test-trunc.ckpt"), Catch::Contains("mdq-test-trunc.ckpt"));
  REQUIRE_THROWS_WITH(load_checkpoint("/tmp/mdq-test-flip.ckpt"), Catch::Contains("checksum"));
}

TEST_CASE("a short CPU run learns the toy problem and reports the rounded test accuracy") {
  app::TrainOptions o = tiny_run("/tmp/mdq-test-learn");
  o.epochs = 6;
  app::TrainResult r = app::train(o);
  REQUIRE(r.test_top1 > 60.0);  // chance is 25%
}

TEST_CASE("the exported packed model predicts exactly what the rounded network does") {
  app::TrainOptions o = tiny_run("/tmp/mdq-test-export");
  o.iters = 12;
  app::train(o);
  const data::DatasetInfo info = data::standard_info("fashion-mnist");
  auto rounded = app::build_model(o, info);
  app::load_weights("/tmp/mdq-test-export/best.ckpt", *rounded);
  app::PackedStats stats = app::save_packed_model("/tmp/mdq-test-export/model.mdqpack", o, *rounded);
  REQUIRE(stats.binary_params == rounded->parameter_count());  // every parameter is binary by default
  auto packed = app::build_model(app::read_packed_options("/tmp/mdq-test-export/model.mdqpack"), info);
  app::load_packed_model("/tmp/mdq-test-export/model.mdqpack", *packed);
  rounded->eval();
  packed->eval();
  NoGradScope no_grad;
  Tensor x = testing::random_tensor({16, 1, 28, 28}, 21);
  REQUIRE(packed->forward(Var(x)).value().to_vector() == rounded->forward(Var(x)).value().to_vector());
  REQUIRE_THROWS_WITH(app::read_packed_options("/tmp/mdq-test-export/best.ckpt"), Catch::Contains("not a packed model"));
}

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
#include "tests/support/toy_training.h"

using namespace mdq;
using mdq::testing::binary;
using mdq::testing::make_dataset;
using mdq::testing::run_command;
using mdq::testing::tiny_run;


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

// mdq-train end to end on a tiny synthetic Fashion-MNIST-format dataset, on the CPU: the CLI's
// errors, checkpoint round trip and refusal of damaged files, and resume == uninterrupted run.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
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

namespace {

// A fresh folder per test process for every file the tests write, so that two copies of this
// suite (ctest -j, or two build folders on one machine) never share a run folder.
const std::string& root() {
  static std::string dir;
  if (dir.empty()) {
    char tmpl[] = "/tmp/mdq-train-app-XXXXXX";
    dir = mkdtemp(tmpl);
  }
  return dir;
}

std::string P(const std::string& name) { return root() + "/" + name; }

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

// Two run checkpoints hold the same state: the same tensors bit for bit and the same metadata
// but for the line naming the run folder.
bool same_state(const std::string& a_path, const std::string& b_path) {
  Checkpoint a = load_checkpoint(a_path), b = load_checkpoint(b_path);
  auto without_out = [](std::string m) {
    const size_t at = m.find("\nout = ");
    return at == std::string::npos ? m : m.erase(at, m.find('\n', at + 1) - at);
  };
  if (without_out(a.metadata) != without_out(b.metadata) || a.tensors.size() != b.tensors.size()) return false;
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const Tensor &x = a.tensors[i].second, &y = b.tensors[i].second;
    if (a.tensors[i].first != b.tensors[i].first || x.shape() != y.shape() || x.dtype() != y.dtype() ||
        std::memcmp(x.raw(), y.raw(), x.nbytes()) != 0)
      return false;
  }
  return true;
}

bool exists(const std::string& path) {
  struct stat st{};
  return stat(path.c_str(), &st) == 0;
}

std::string cli_run(const std::string& out, const std::string& extra) {
  return binary("mdq-train") + " --model smallcnn --dataset fashion-mnist --data-dir " + make_dataset() +
         " --batch-size 32 --lr 0.003 --beta-interval 3 --beta-rho 1.1 --device cpu --eval-every 3 --workers 2"
         " --quiet --out " + out + " " + extra;
}

}  // namespace

TEST_CASE("mdq-train --help works and bad input exits non-zero with a clear message") {
  std::string out;
  REQUIRE(run_command(binary("mdq-train") + " --help", out) == 0);
  REQUIRE(out.find("--beta-rho") != std::string::npos);
  REQUIRE(run_command(binary("mdq-train") + " --no-such-flag 1", out) != 0);
  REQUIRE(out.find("unknown option 'no-such-flag'") != std::string::npos);
  REQUIRE(run_command(binary("mdq-train") + " --model resnet99 --dataset fashion-mnist --data-dir " + make_dataset() +
                          " --iters 1 --device cpu --out " + P("mdq-cli-run"),
                      out) != 0);
  REQUIRE(out.find("unknown model 'resnet99'") != std::string::npos);
  REQUIRE(run_command(binary("mdq-train") + " --dataset fashion-mnist --data-dir /nonexistent/dir --iters 1", out) != 0);
  REQUIRE(out.find("/nonexistent/dir") != std::string::npos);
  REQUIRE(run_command(binary("mdq-train") + " --iters 5 --epochs 2", out) != 0);
  REQUIRE(out.find("conflict") != std::string::npos);
  // Refused before any data is read or folder made.
  for (const char* bad : {"--lr inf", "--lr nan", "--lr -1", "--eval-every -2", "--workers -1", "--seed -1",
                          "--method md-nothing", "--method md-softmax-s --levels 7"}) {
    INFO(bad);
    REQUIRE(run_command(cli_run(P("mdq-cli-never"), std::string(bad) + " --iters 2"), out) == 2);
    REQUIRE(!exists(P("mdq-cli-never")));
  }
  REQUIRE(run_command(cli_run(P("mdq-cli-never"), "--lr inf --iters 2"), out) == 2);
  REQUIRE(out.find("--lr must be a finite positive number") != std::string::npos);
  REQUIRE(run_command(cli_run(P("mdq-cli-never"), "--seed -1 --iters 2"), out) == 2);
  REQUIRE(out.find("--seed: -1 is negative") != std::string::npos);
  REQUIRE(run_command(binary("mdq-train") + " --config /tmp", out) == 2);
  REQUIRE(out.find("is not a file") != std::string::npos);
  // --help shows the defaults and the exit codes; the small apps answer --help with 0.
  REQUIRE(run_command(binary("mdq-train") + " --help", out) == 0);
  REQUIRE(out.find("[default: 0.001]") != std::string::npos);
  REQUIRE(out.find("75 stopped by SIGINT/SIGTERM") != std::string::npos);
  REQUIRE(run_command(binary("mdq-device") + " --help", out) == 0);
  REQUIRE(run_command(binary("mdq-datainfo") + " --help", out) == 0);
  // --out that cannot be made says why.
  REQUIRE(run_command(cli_run("/proc/mdq-cannot", "--iters 2"), out) == 2);
  REQUIRE(out.find("cannot create folder '/proc/mdq-cannot'") != std::string::npos);
}

TEST_CASE("a run folder is never overwritten by accident") {
  std::string out;
  REQUIRE(run_command(cli_run(P("mdq-cli-keep"), "--iters 6"), out) == 0);
  const std::string ckpt = slurp(P("mdq-cli-keep/last.ckpt")), metrics = slurp(P("mdq-cli-keep/metrics.jsonl"));
  REQUIRE(run_command(cli_run(P("mdq-cli-keep"), "--iters 6"), out) == 2);
  REQUIRE(out.find("already holds a run") != std::string::npos);
  REQUIRE(out.find("--resume") != std::string::npos);
  REQUIRE(slurp(P("mdq-cli-keep/last.ckpt")) == ckpt);
  REQUIRE(slurp(P("mdq-cli-keep/metrics.jsonl")) == metrics);
  // --overwrite starts afresh: the same options train the same run again.
  REQUIRE(run_command(cli_run(P("mdq-cli-keep"), "--iters 6 --overwrite"), out) == 0);
  REQUIRE(slurp(P("mdq-cli-keep/last.ckpt")) == ckpt);
}

TEST_CASE("--resume --out DIR alone continues the run from its config.txt; data changes are refused") {
  std::string out;
  REQUIRE(run_command(cli_run(P("mdq-cli-whole"), "--iters 12"), out) == 0);
  REQUIRE(run_command(cli_run(P("mdq-cli-part"), "--iters 6"), out) == 0);
  REQUIRE(run_command(binary("mdq-train") + " --resume --out " + P("mdq-cli-part --iters 12"), out) == 0);
  REQUIRE(out.find("resumed from " + P("mdq-cli-part/last.ckpt at iteration 6")) != std::string::npos);
  REQUIRE(same_state(P("mdq-cli-part/last.ckpt"), P("mdq-cli-whole/last.ckpt")));
  // The same validation lines as the unbroken run, none twice, and one final test line.
  auto lines_with = [](const std::string& text, const std::string& key) {
    std::string kept, line;
    std::istringstream in(text);
    while (std::getline(in, line))
      if (line.find(key) != std::string::npos) kept += line + "\n";
    return kept;
  };
  const std::string part = slurp(P("mdq-cli-part/metrics.jsonl")), whole = slurp(P("mdq-cli-whole/metrics.jsonl"));
  REQUIRE(lines_with(part, "val_acc_rounded") == lines_with(whole, "val_acc_rounded"));
  auto test_line = [&](const std::string& text) {  // the final line, less its throughput
    const std::string line = lines_with(text, "test_top1");
    return line.substr(0, line.find(", \"train_img_per_s\""));
  };
  REQUIRE(test_line(part) == test_line(whole));
  auto count_lines = [](const std::string& text) { return std::count(text.begin(), text.end(), '\n'); };
  REQUIRE(count_lines(lines_with(part, "\"iter\": 12,")) == count_lines(lines_with(whole, "\"iter\": 12,")));
  REQUIRE(run_command(binary("mdq-train") + " --resume --out " + P("mdq-cli-part --data-dir /tmp"), out) == 2);
  REQUIRE(out.find("cannot change its data-dir") != std::string::npos);
  REQUIRE(run_command(binary("mdq-train") + " --resume --out " + P("mdq-cli-part --val-fraction 0.2"), out) == 2);
  REQUIRE(out.find("cannot change its val-fraction") != std::string::npos);
  REQUIRE(run_command(binary("mdq-train") + " --resume --out " + P("mdq-cli-part --iters 15 --lr 0.001"), out) == 0);
  REQUIRE(out.find("resume: lr changes from 0.003 to 0.001") != std::string::npos);
  REQUIRE(run_command(binary("mdq-train") + " --resume --out " + P("mdq-cli-nothing"), out) == 2);
  REQUIRE(out.find("no run in '" + P("mdq-cli-nothing'")) != std::string::npos);
}

TEST_CASE("SIGTERM finishes the step, saves last.ckpt, exits 75, and the run resumes bit for bit") {
  std::string out;
  const std::string args = "--iters 240 --eval-every 60 --log-every 1";
  REQUIRE(run_command(cli_run(P("mdq-sig-whole"), args), out) == 0);
  // Start the same run in the background and stop it once it has logged a few steps.
  const std::string cmd = cli_run(P("mdq-sig-part"), args) + " > " + P("mdq-sig-log.txt") + " 2>&1 & echo $! > " + P("mdq-sig-pid");
  REQUIRE(std::system(cmd.c_str()) == 0);
  std::string pid;
  for (int tries = 0; tries < 2000 && slurp(P("mdq-sig-part/metrics.jsonl")).size() < 300; ++tries) usleep(5000);
  pid = slurp(P("mdq-sig-pid"));
  pid.erase(pid.find_last_not_of(" \n") + 1);
  REQUIRE(std::system(("kill -TERM " + pid).c_str()) == 0);
  // The shell's `wait` cannot see a process of another shell: poll until it is gone.
  for (int tries = 0; tries < 2000 && std::system(("kill -0 " + pid + " 2>/dev/null").c_str()) == 0; ++tries) usleep(5000);
  const std::string log = slurp(P("mdq-sig-log.txt"));
  INFO(log);
  REQUIRE(log.find("stopped by SIGTERM at iteration") != std::string::npos);
  REQUIRE(log.find("mdq-train --resume --out " + P("mdq-sig-part")) != std::string::npos);
  const int64_t stopped = app::read_iteration(P("mdq-sig-part/last.ckpt"));
  REQUIRE(stopped > 0);
  REQUIRE(stopped < 240);
  // A kill during a save leaves a temporary file: the next start removes it and loads the checkpoint.
  std::ofstream(P("mdq-sig-part/last.ckpt.tmp.99999")) << "half a checkpoint";
  REQUIRE(run_command(binary("mdq-train") + " --resume --out " + P("mdq-sig-part"), out) == 0);
  INFO(out);
  REQUIRE(out.find("removed " + P("mdq-sig-part/last.ckpt.tmp.99999")) != std::string::npos);
  REQUIRE(!exists(P("mdq-sig-part/last.ckpt.tmp.99999")));
  REQUIRE(same_state(P("mdq-sig-part/last.ckpt"), P("mdq-sig-whole/last.ckpt")));
  REQUIRE(same_state(P("mdq-sig-part/best.ckpt"), P("mdq-sig-whole/best.ckpt")));
}

TEST_CASE("a diverging run stops, names the iteration, exits 3 and keeps the last good checkpoints") {
  std::string out;
  REQUIRE(run_command(cli_run(P("mdq-nan"), "--method float --iters 6"), out) == 0);
  const std::string last = slurp(P("mdq-nan/last.ckpt")), best = slurp(P("mdq-nan/best.ckpt"));
  // A learning rate that is finite but far too large blows the float network up within a step.
  REQUIRE(run_command(binary("mdq-train") + " --resume --out " + P("mdq-nan --iters 30 --lr 1e30"), out) == 3);
  INFO(out);
  REQUIRE(out.find("training diverged") != std::string::npos);
  REQUIRE(out.find("at iteration") != std::string::npos);
  REQUIRE(out.find("last.ckpt (iteration 6)") != std::string::npos);
  REQUIRE(slurp(P("mdq-nan/last.ckpt")) == last);
  REQUIRE(slurp(P("mdq-nan/best.ckpt")) == best);
  REQUIRE(app::read_iteration(P("mdq-nan/last.ckpt")) == 6);
  // The same through the library: the result says where it stopped.
  app::TrainOptions o = tiny_run(P("mdq-nan-lib"));
  o.method = "float";
  o.iters = 30;
  o.lr = 1e30f;
  app::TrainResult r = app::train(o);
  REQUIRE(r.end == app::TrainResult::End::Diverged);
  REQUIRE(r.stopped_at >= 1);
  REQUIRE(app::exit_code(r) == 3);
}

TEST_CASE("mdq-eval and mdq-export say so when given a packed model") {
  std::string out;
  app::TrainOptions o = tiny_run(P("mdq-test-pack"));
  o.iters = 3;
  app::train(o);
  REQUIRE(run_command(binary("mdq-export") + " --checkpoint " + P("mdq-test-pack/best.ckpt") + " --out " + P("mdq-test-pack/m.mdqpack"), out) == 0);
  REQUIRE(run_command(binary("mdq-eval") + " --checkpoint " + P("mdq-test-pack/m.mdqpack"), out) == 2);
  REQUIRE(out.find("is a packed model") != std::string::npos);
  REQUIRE(out.find("mdq-infer --model") != std::string::npos);
  REQUIRE(run_command(binary("mdq-export") + " --checkpoint " + P("mdq-test-pack/m.mdqpack") + " --out " + P("mdq-test-pack/x"), out) == 2);
  REQUIRE(out.find("is a packed model") != std::string::npos);
}

// mdq-infer --random-model: a random ±1 network on random images, no model file or dataset: on
// the CPU the packed engine (its reference loops) agrees with the float engine on every image,
// and flags that belong to the other mode are refused by name.
TEST_CASE("mdq-infer --random-model runs a random network on both engines; mixed-up flags are refused") {
  std::string out;
  const std::string infer = binary("mdq-infer") + " --device cpu --random-model smallcnn --image-size 16 --classes 4";
  REQUIRE(run_command(infer + " --batch-size 3 --batches 1 --engine packed --act-bits 1 --agree", out) == 0);
  REQUIRE(out.find("smallcnn, random binary weights, 3x16x16 images, 4 classes, sign activations") != std::string::npos);
  REQUIRE(out.find("images/s") != std::string::npos);
  REQUIRE(out.find("the same top-1 class on 3 of 3 images") != std::string::npos);
  REQUIRE(run_command(infer + " --batch-size 2 --batches 1 --levels 3", out) == 0);
  REQUIRE(out.find("random ternary weights") != std::string::npos);
  REQUIRE(run_command(infer + " --levels 4", out) == 2);
  REQUIRE(out.find("--levels must be 2 or 3") != std::string::npos);
  REQUIRE(run_command(infer + " --data-dir /tmp", out) == 2);
  REQUIRE(out.find("--data-dir and --split have no meaning") != std::string::npos);
  REQUIRE(run_command(binary("mdq-infer") + " --model x.mdqpack --classes 4", out) == 2);
  REQUIRE(out.find("--classes belongs to --random-model") != std::string::npos);
  REQUIRE(run_command(binary("mdq-infer") + " --engine packed", out) == 2);
  REQUIRE(out.find("give one of --model and --random-model") != std::string::npos);
}

// mdq-infer --stem: every value runs and agrees with the float engine on the CPU, where tc (and
// auto, which is tc) have no tensor cores and run the direct kernel's reference, as the engine
// line says (tc-bf16 too); f32 keeps the stem on the float engine (no stem on that line); a bad value is
// refused naming the flag and its values.
TEST_CASE("mdq-infer --stem auto|tc|tc-bf16|direct|f32|bf16 on the CPU; a bad value is refused") {
  std::string out;
  const std::string infer = binary("mdq-infer") +
                            " --device cpu --random-model smallcnn --image-size 16 --classes 4 --batch-size 3"
                            " --batches 1 --engine packed --act-bits 1 --agree --stem ";
  for (const char* stem : {"auto", "tc", "tc-bf16", "direct", "f32", "bf16"}) {
    INFO("--stem " << stem);
    REQUIRE(run_command(infer + stem, out) == 0);
    INFO(out);
    CHECK(out.find("the same top-1 class on 3 of 3 images") != std::string::npos);
    const bool f32 = std::string(stem) == "f32";
    CHECK((out.find("; stem: direct kernel)") != std::string::npos) == !f32);
    CHECK(out.find("stem: tensor cores") == std::string::npos);
  }
  REQUIRE(run_command(infer + "tensor", out) == 2);
  CHECK(out.find("--stem must be auto, tc, tc-bf16, direct, f32 or bf16, got 'tensor'") != std::string::npos);
}

TEST_CASE("resume continues bit for bit, and damaged checkpoints are refused") {
  app::TrainOptions whole = tiny_run(P("mdq-test-whole"));
  whole.iters = 12;
  app::train(whole);

  app::TrainOptions part = tiny_run(P("mdq-test-part"));
  part.iters = 6;
  app::train(part);
  part.iters = 12;
  part.resume = true;
  app::train(part);

  Checkpoint a = load_checkpoint(P("mdq-test-whole/last.ckpt"));
  Checkpoint b = load_checkpoint(P("mdq-test-part/last.ckpt"));
  REQUIRE(a.tensors.size() == b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    INFO(a.tensors[i].first);
    REQUIRE(a.tensors[i].first == b.tensors[i].first);
    if (a.tensors[i].second.dtype() == DType::F32)
      REQUIRE(a.tensors[i].second.to_vector() == b.tensors[i].second.to_vector());
  }

  // A truncated copy and a bit-flipped copy are both refused, naming the problem.
  std::ifstream in(P("mdq-test-whole/last.ckpt"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  std::ofstream(P("mdq-test-trunc.ckpt"), std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  std::string flipped = bytes;
  flipped[flipped.size() / 2] ^= 0x10;
  std::ofstream(P("mdq-test-flip.ckpt"), std::ios::binary).write(flipped.data(), static_cast<std::streamsize>(flipped.size()));
  REQUIRE_THROWS_WITH(load_checkpoint(P("mdq-test-trunc.ckpt")), Catch::Contains("mdq-test-trunc.ckpt"));
  REQUIRE_THROWS_WITH(load_checkpoint(P("mdq-test-flip.ckpt")), Catch::Contains("checksum"));
}

TEST_CASE("a short CPU run learns the toy problem and reports the rounded test accuracy") {
  app::TrainOptions o = tiny_run(P("mdq-test-learn"));
  o.epochs = 6;
  app::TrainResult r = app::train(o);
  REQUIRE(r.test_top1 > 60.0);  // chance is 25%
}

TEST_CASE("the exported packed model predicts exactly what the rounded network does") {
  app::TrainOptions o = tiny_run(P("mdq-test-export"));
  o.iters = 12;
  app::train(o);
  const data::DatasetInfo info = data::standard_info("fashion-mnist");
  auto rounded = app::build_model(o, info);
  app::load_weights(P("mdq-test-export/best.ckpt"), *rounded);
  app::PackedStats stats = app::save_packed_model(P("mdq-test-export/model.mdqpack"), o, *rounded);
  REQUIRE(stats.binary_params == rounded->parameter_count());  // every parameter is binary by default
  auto packed = app::build_model(app::read_packed_options(P("mdq-test-export/model.mdqpack")), info);
  app::load_packed_model(P("mdq-test-export/model.mdqpack"), *packed);
  rounded->eval();
  packed->eval();
  NoGradScope no_grad;
  Tensor x = testing::random_tensor({16, 1, 28, 28}, 21);
  REQUIRE(packed->forward(Var(x)).value().to_vector() == rounded->forward(Var(x)).value().to_vector());
  REQUIRE_THROWS_WITH(app::read_packed_options(P("mdq-test-export/best.ckpt")), Catch::Contains("not a packed model"));
}

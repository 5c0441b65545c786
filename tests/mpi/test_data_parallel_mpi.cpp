// Data-parallel training on CPU ranks over MPI (apps/common/data_parallel.h, engine/dist/).
// ctest runs this binary alone, as the driver: it runs the single-process references, starts
// `mpirun -np 2 --oversubscribe` for the data-parallel side (mdq-train itself, or this binary
// with --rank-* for the checks that need code inside the ranks) and compares. Without MPI (or
// mpirun) it prints the reason and exits 77, which ctest reports as skipped.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "apps/common/data_parallel.h"
#include "engine/dist/mpi.h"
#include "engine/dist/sync_batchnorm.h"
#include "engine/nn/batchnorm.h"
#include "engine/nn/functional.h"
#include "engine/ops/batchnorm.h"
#include "tests/support/testing.h"
#include "tests/support/run_compare.h"
#include "tests/support/toy_training.h"

using namespace mdq;
using mdq::testing::binary;
using mdq::testing::mpirun_command;
using mdq::testing::require_same_run;
using mdq::testing::run_command;
using mdq::testing::toy_train_flags;

namespace {

std::string self_path() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "test_data_parallel_mpi";
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// ---- code that runs inside the ranks (this binary under mpirun, with --rank-*)

// One sync-BN layer on each rank's half of a batch against ops::batch_norm on the whole batch,
// without and with a fused ReLU.
int rank_sync_bn() {
  auto comm = dist::make_mpi_communicator(30);
  const int r = comm->rank(), n = comm->size();
  int bad = 0;
  for (bool relu : {false, true}) {
    const int64_t N = 8, C = 5, HW = 6;
    const Tensor x = mdq::testing::random_tensor({N, C, HW, HW}, 11, -2.f, 3.f);
    const Tensor g = mdq::testing::random_tensor({N, C, HW, HW}, 12);
    const int64_t rows = N / n, per_row = C * HW * HW;
    auto rows_of = [&](const Tensor& t) {
      std::vector<float> v = t.to_vector();
      std::vector<float> mine(v.begin() + r * rows * per_row, v.begin() + (r + 1) * rows * per_row);
      return Tensor::from_vector(mine, {rows, C, HW, HW});
    };
    // Reference: one process, the whole batch.
    Tensor ref_rm = Tensor::full({C}, 0.25f), ref_rv = Tensor::full({C}, 2.f);
    Var ref_x(x.clone(), true);
    Var ref_out = nn::batch_norm(ref_x, Var(), Var(), ref_rm, ref_rv, true, 0.1f, 1e-5f, relu);
    backward(nn::sum(nn::mul(ref_out, Var(g))));
    // This rank's half, statistics over both.
    Tensor rm = Tensor::full({C}, 0.25f), rv = Tensor::full({C}, 2.f);
    Var my_x(rows_of(x), true);
    Var out = dist::sync_batch_norm(*comm, my_x, Var(), Var(), rm, rv, 0.1f, 1e-5f, relu);
    backward(nn::sum(nn::mul(out, Var(rows_of(g)))));
    auto expect = [&](const char* what, const Tensor& got, const Tensor& want, float tol) {
      const std::vector<float> a = got.to_vector(), b = want.to_vector();
      for (size_t i = 0; i < a.size(); ++i)
        if (!(std::fabs(a[i] - b[i]) <= tol)) {
          std::printf("rank %d%s: %s[%zu] = %.9g, single process %.9g\n", r, relu ? " (relu)" : "", what, i, a[i],
                      b[i]);
          ++bad;
          return;
        }
    };
    expect("running_mean", rm, ref_rm, 0.f);  // exactly
    expect("running_var", rv, ref_rv, 0.f);
    expect("output", out.value(), rows_of(ref_out.value()), 0.f);
    expect("grad_input", my_x.grad(), rows_of(ref_x.grad()), 1e-6f);
  }
  if (bad == 0) std::printf("rank %d: sync BN matches the single process (statistics and output exactly)\n", r);
  return bad == 0 ? 0 : 1;
}

// Rank 1 hangs (or dies, or throws) before a collective that rank 0 enters with a short timeout.
int rank_fault(const std::string& kind) {
  auto comm = dist::make_mpi_communicator(2.0);
  if (comm->rank() == 1) {
    if (kind == "hang") std::this_thread::sleep_for(std::chrono::seconds(60));
    if (kind == "die") raise(SIGKILL);
    if (kind == "throw") {
      app::TrainOptions o;
      return app::run_train_ranks(o, [](const app::TrainOptions&) -> int { throw Error("a data error on rank 1"); });
    }
  }
  std::vector<float> v(16, 1.f);
  comm->all_reduce_sum(v.data(), 16);
  return 0;
}

}  // namespace

TEST_CASE("2 MPI ranks x batch 32 train like 1 rank x batch 64 (--sync-bn; md-tanh-s and float)") {
  for (const char* method : {"md-tanh-s", "float"}) {
    INFO(method);
    const std::string one = std::string("/tmp/mdq-dp-one-") + method, two = std::string("/tmp/mdq-dp-two-") + method;
    std::string out;
    REQUIRE(run_command(binary("mdq-train") + toy_train_flags(method, one, 20, "cpu"), out) == 0);
    INFO(out);
    REQUIRE(run_command(mpirun_command(2) + " " + binary("mdq-train") + toy_train_flags(method, two, 20, "cpu") + " --sync-bn", out) == 0);
    REQUIRE(out.find("data-parallel: 2 ranks") != std::string::npos);
    REQUIRE(out.find("TEST top-1") != std::string::npos);
    // Tolerance: the ranks' gradients are means of two half-batch means (another float rounding
    // than one mean over 64), and 20 Adam steps carry that rounding into the weights.
    require_same_run(one, two, 2e-5f, 1e-4f);
  }
}

TEST_CASE("--resume works with any number of ranks: 2 ranks for 10 steps, then 1 rank to 20") {
  const std::string one = "/tmp/mdq-dp-one-md-tanh-s", mixed = "/tmp/mdq-dp-resume";
  std::string out;
  if (!std::ifstream(one + "/last.ckpt")) REQUIRE(run_command(binary("mdq-train") + toy_train_flags("md-tanh-s", one, 20, "cpu"), out) == 0);
  std::remove((mixed + "/metrics.jsonl").c_str());
  REQUIRE(run_command(mpirun_command(2) + " " + binary("mdq-train") + toy_train_flags("md-tanh-s", mixed, 10, "cpu") + " --sync-bn", out) == 0);
  INFO(out);
  REQUIRE(run_command(binary("mdq-train") + toy_train_flags("md-tanh-s", mixed, 20, "cpu") + " --resume", out) == 0);
  require_same_run(one, mixed, 2e-5f, 1e-4f);
}

TEST_CASE("per-rank BatchNorm (the default) trains on 2 ranks and leaves equal running statistics") {
  const std::string run = "/tmp/mdq-dp-per-rank-bn";
  std::string out;
  REQUIRE(run_command(mpirun_command(2) + " " + binary("mdq-train") + toy_train_flags("md-tanh-s", run, 4, "cpu"), out) == 0);
  INFO(out);
  REQUIRE(out.find("BatchNorm statistics per rank") != std::string::npos);
  Checkpoint ck = load_checkpoint(run + "/last.ckpt");
  bool has_running_mean = false;
  for (auto& [name, t] : ck.tensors) has_running_mean |= name.find("running_mean") != std::string::npos;
  REQUIRE(has_running_mean);
}

TEST_CASE("sync BN on 2 ranks equals one process's BatchNorm exactly in the statistics") {
  std::string out;
  const int rc = run_command(mpirun_command(2) + " " + self_path() + " --rank-sync-bn", out);
  INFO(out);
  REQUIRE(rc == 0);
  REQUIRE(out.find("rank 0: sync BN matches") != std::string::npos);
  REQUIRE(out.find("rank 1: sync BN matches") != std::string::npos);
}

TEST_CASE("a rank that hangs, dies or fails stops the other ranks with a message, never a silent hang") {
  std::string out;
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(run_command(mpirun_command(2) + " " + self_path() + " --rank-fault hang", out) != 0);
  INFO(out);
  CHECK(out.find("mdq rank 0: MPI_Allreduce has not finished after 2 s") != std::string::npos);
  CHECK(seconds_since(t0) < 30);  // 2 s timeout, then mpirun ends rank 1

  t0 = std::chrono::steady_clock::now();
  REQUIRE(run_command(mpirun_command(2) + " " + self_path() + " --rank-fault die", out) != 0);
  INFO(out);
  CHECK(seconds_since(t0) < 30);

  t0 = std::chrono::steady_clock::now();
  REQUIRE(run_command(mpirun_command(2) + " " + self_path() + " --rank-fault throw", out) != 0);
  INFO(out);
  CHECK(out.find("error: a data error on rank 1") != std::string::npos);
  CHECK(seconds_since(t0) < 30);
}

int main(int argc, char* argv[]) {
  try {
    if (argc >= 2 && std::strcmp(argv[1], "--rank-sync-bn") == 0) return rank_sync_bn();
    if (argc >= 3 && std::strcmp(argv[1], "--rank-fault") == 0) return rank_fault(argv[2]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank error: %s\n", e.what());
    return 2;
  }
  const char* mpiexec = std::getenv("MDQ_MPIEXEC");
  if (!dist::mpi_built() || !mpiexec || !*mpiexec || access(mpiexec, X_OK) != 0) {
    std::printf("SKIPPED: %s\n", dist::mpi_built() ? "mpirun not found (MDQ_MPIEXEC)"
                                                  : "mdq was built without MPI (apt-get install libopenmpi-dev openmpi-bin)");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}

// What the training tests share: a tiny learnable dataset in Fashion-MNIST's idx format (class c
// has a bright 7×7 square at position c), small CPU run options, and running the built apps.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

#include "apps/common/options.h"
#include "engine/random.h"

namespace mdq::testing {

inline void put_be32(std::ofstream& f, uint32_t v) {
  unsigned char b[4] = {static_cast<unsigned char>(v >> 24), static_cast<unsigned char>(v >> 16),
                        static_cast<unsigned char>(v >> 8), static_cast<unsigned char>(v)};
  f.write(reinterpret_cast<const char*>(b), 4);
}

inline void write_idx_pair(const std::string& dir, const std::string& prefix, int count, uint64_t seed) {
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

// Made once per process, in a fresh temporary folder.
inline std::string make_dataset() {
  static std::string dir;
  if (!dir.empty()) return dir;
  char tmpl[] = "/tmp/mdq-train-test-XXXXXX";
  dir = mkdtemp(tmpl);
  write_idx_pair(dir, "train", 320, 1);
  write_idx_pair(dir, "t10k", 96, 2);
  return dir;
}

inline app::TrainOptions tiny_run(const std::string& out) {
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
  o.overwrite = true;  // a test may train into the same folder again
  o.precision = "fp32";  // GPU runs are compared with CPU runs and with each other at fp32 bounds
  return o;
}

// mdq-train flags of the runs the data-parallel tests compare: the toy dataset, a global batch
// of 64, an MD schedule that changes β every 3 steps, a metrics line per step; a run already in
// `out` is replaced (--overwrite; with --resume it is continued).
inline std::string toy_train_flags(const std::string& method, const std::string& out, int iters,
                                   const std::string& device) {
  return " --model smallcnn --dataset fashion-mnist --data-dir " + make_dataset() + " --device " + device +
         " --method " + method + " --batch-size 64 --iters " + std::to_string(iters) +
         " --lr 3e-3 --beta-interval 3 --beta-rho 1.1 --log-every 1 --eval-every 10 --max-eval-batches 1" +
         " --workers 1 --precision fp32 --quiet --overwrite --out " + out;
}

// A built binary of this build (ctest sets MDQ_BINARY_DIR).
inline std::string binary(const char* name) {
  const char* dir = std::getenv("MDQ_BINARY_DIR");
  return std::string(dir ? dir : ".") + "/" + name;
}

// "mpirun -np N --oversubscribe [--allow-run-as-root]" from MDQ_MPIEXEC (set by ctest when CMake
// found MPI), or "" when there is none.
inline std::string mpirun_command(int ranks) {
  const char* exe = std::getenv("MDQ_MPIEXEC");
  if (!exe || !*exe || access(exe, X_OK) != 0) return "";
  std::string cmd = std::string(exe) + " -np " + std::to_string(ranks) + " --oversubscribe";
  if (geteuid() == 0) cmd += " --allow-run-as-root";
  return cmd;
}

// Runs a shell command; its stdout and stderr come back in `output`. Returns the exit code
// (128 + signal when a signal ended it).
inline int run_command(const std::string& cmd, std::string& output) {
  const std::string file = "/tmp/mdq-cmd-out-" + std::to_string(getpid()) + ".txt";
  std::string full = cmd + " > " + file + " 2>&1";
  int rc = std::system(full.c_str());
  std::ifstream f(file);
  output.assign(std::istreambuf_iterator<char>(f), {});
  std::remove(file.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

}  // namespace mdq::testing

// mdq-train's options: one table of keys shared by the command line (--key value) and config
// files (key = value lines), so a config holds exactly what the flags do; flags override it.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mdq::app {

struct TrainOptions {
  std::string model = "resnet18";
  std::string dataset = "cifar10";
  std::string data_dir;
  std::string method = "md-tanh-s";
  int levels = 2;
  int64_t iters = 0;    // one of iters / epochs; iters wins when both are set in a config
  double epochs = 0;
  int64_t batch_size = 128;
  float lr = 1e-3f;
  std::vector<int64_t> lr_step;  // iterations at which lr is multiplied by lr_gamma
  float lr_gamma = 0.3f;
  float beta_rho = 1.02f;
  int64_t beta_interval = 200;
  std::string optimizer = "adam";  // the direction of E8: adam | sgd
  float momentum = 0.9f;           // for sgd
  float weight_decay = 0.f;
  std::string precision = "auto";  // trainer.cpp resolves auto for the device
  bool cuda_graph = true;          // engine/train_step.h: the GPU step replayed from a CUDA graph
  uint64_t seed = 1;
  std::string device = "auto";  // auto | cpu | cuda
  std::string out = "runs/latest";
  bool resume = false;
  bool overwrite = false;  // start afresh in an --out that already holds a run
  bool keep_first_last_float = false;
  std::string ternary_start = "scaled";  // quant::QuantConfig::ternary_start
  std::string e7_arithmetic = "exact";   // quant::QuantConfig::e7_arithmetic
  bool bn_affine = false;
  int act_bits = 32;
  double val_fraction = 0.1;
  int64_t eval_every = 0;   // 0: once per epoch
  int64_t ckpt_every = 0;   // 0: with every evaluation
  int64_t log_every = 50;
  int64_t max_eval_batches = 0;  // 0: the whole split
  int workers = 0;
  bool quiet = false;
  // Data-parallel training (apps/common/data_parallel.h): --gpus N forks N ranks on this machine;
  // under mpirun the ranks come from MPI and --gpus stays 0.
  int gpus = 0;
  bool sync_bn = false;
  double dist_timeout = 300;  // seconds a collective may wait before the rank stops
};

// Parses argv (after the program name). Throws mdq::Error naming the bad flag or value and the
// allowed keys. Returns false when --help was asked for (help text already printed). `given`, when
// not null, receives the keys the command line set (through flags or its --config file).
bool parse_train_args(int argc, char** argv, TrainOptions& o, std::vector<std::string>* given = nullptr);
// Range checks every run needs before anything is loaded or written (lr finite and positive,
// counts not negative, seed in range, known model and method); throws naming the option.
void validate_train_options(const TrainOptions& o);
// --resume: the options of the run in `cmdline.out` (its config.txt), with the keys in `given`
// taken from the command line. Keys that would change the data, the split or the shapes are
// refused when they differ; any other difference is printed (it applies from now on).
TrainOptions resume_options(const TrainOptions& cmdline, const std::vector<std::string>& given);
// key=value lines, '#' comments. Unknown keys are errors naming the file and line. keys_set, when
// not null, receives the name of every key the file sets.
void load_config_file(const std::string& path, TrainOptions& o, std::vector<std::string>* keys_set = nullptr);
std::string train_usage();
// Every option as "key = value" lines: written into checkpoints and runs' folders, and read back
// by mdq-eval and --resume with load_config_text.
std::string to_config_text(const TrainOptions& o);
void load_config_text(const std::string& text, const std::string& origin, TrainOptions& o,
                      std::vector<std::string>* keys_set = nullptr);

}  // namespace mdq::app

#include "apps/common/options.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>

#include "common/error.h"
#include "engine/quant/method.h"
#include "models/model_zoo.h"

namespace mdq::app {
namespace {

// One row per key: how to set it from text, how to print it, and its help line.
struct Key {
  const char* name;
  const char* help;
  std::function<void(TrainOptions&, const std::string&)> set;
  std::function<std::string(const TrainOptions&)> get;
  bool is_flag = false;  // a boolean switch: "--resume" alone means true
};

int64_t to_int(const std::string& key, const std::string& v) {
  size_t used = 0;
  long long x = 0;
  try { x = std::stoll(v, &used); } catch (...) { used = 0; }
  MDQ_CHECK(used == v.size() && !v.empty(), "--" << key << ": '" << v << "' is not a whole number");
  return x;
}
double to_double(const std::string& key, const std::string& v) {
  size_t used = 0;
  double x = 0;
  try { x = std::stod(v, &used); } catch (...) { used = 0; }
  MDQ_CHECK(used == v.size() && !v.empty(), "--" << key << ": '" << v << "' is not a number");
  return x;
}
bool to_bool(std::string key, const std::string& v) {
  if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
  if (v == "0" || v == "false" || v == "no" || v == "off") return false;
  std::replace(key.begin(), key.end(), '_', '-');  // BOOL(field) passes the field's name: say the flag's
  MDQ_FAIL("--" << key << ": '" << v << "' is not true/false");
}
std::string num(double x) {
  std::ostringstream s;
  s << x;
  return s.str();
}
std::string one_of(const std::string& key, const std::string& v, std::initializer_list<const char*> allowed) {
  std::string list;
  for (const char* a : allowed) {
    if (v == a) return v;
    list += (list.empty() ? "" : ", ") + std::string(a);
  }
  MDQ_FAIL("--" << key << ": '" << v << "' is not one of " << list);
}

#define STR(field) [](TrainOptions& o, const std::string& v) { o.field = v; }, [](const TrainOptions& o) { return o.field; }
#define INT(field) [](TrainOptions& o, const std::string& v) { o.field = to_int(#field, v); }, [](const TrainOptions& o) { return std::to_string(o.field); }
#define REAL(field) [](TrainOptions& o, const std::string& v) { o.field = static_cast<decltype(o.field)>(to_double(#field, v)); }, [](const TrainOptions& o) { return num(o.field); }
#define BOOL(field) [](TrainOptions& o, const std::string& v) { o.field = to_bool(#field, v); }, [](const TrainOptions& o) { return std::string(o.field ? "true" : "false"); }, true

const std::vector<Key>& keys() {
  static const std::vector<Key> k = {
      {"model", "resnet18 | vgg16 | mobilenetv2 | smallcnn", STR(model)},
      {"dataset", "cifar10 | cifar100 | fashion-mnist | mnist | tinyimagenet | imagenet | folder", STR(dataset)},
      {"data-dir", "folder holding the dataset's files", STR(data_dir)},
      {"method", "float | bc | gd-tanh | md-tanh | md-tanh-s | pmf | md-softmax | md-softmax-s", STR(method)},
      {"levels", "quantization levels: 2 (binary), 3 (ternary), 4 (softmax only)", INT(levels)},
      {"iters", "training iterations (or use --epochs)", INT(iters)},
      {"epochs", "training epochs (may be fractional)", REAL(epochs)},
      {"batch-size", "images per iteration", INT(batch_size)},
      {"lr", "learning rate", REAL(lr)},
      {"lr-step", "comma-separated iterations where lr is multiplied by lr-gamma (e.g. 30000,60000,90000)",
       [](TrainOptions& o, const std::string& v) {
         o.lr_step.clear();
         std::stringstream s(v);
         std::string item;
         while (std::getline(s, item, ','))
           if (!item.empty()) o.lr_step.push_back(to_int("lr-step", item));
       },
       [](const TrainOptions& o) {
         std::string r;
         for (int64_t x : o.lr_step) r += (r.empty() ? "" : ",") + std::to_string(x);
         return r;
       }},
      {"lr-gamma", "lr multiplier at each lr-step", REAL(lr_gamma)},
      {"beta-rho", "β annealing factor ρ (E10)", REAL(beta_rho)},
      {"beta-interval", "β is multiplied by ρ every T iterations (E10)", INT(beta_interval)},
      {"optimizer", "direction of the update (E8): adam | sgd",
       [](TrainOptions& o, const std::string& v) { o.optimizer = one_of("optimizer", v, {"adam", "sgd"}); },
       [](const TrainOptions& o) { return o.optimizer; }},
      {"momentum", "momentum for sgd", REAL(momentum)},
      {"weight-decay", "L2 weight decay", REAL(weight_decay)},
      {"precision", "auto | fp32 | tf32 | bf16 (GPU convolutions and GEMMs; master weights, optimizer state and BN "
                    "stay fp32; auto = the fastest measured on the GPU: bf16, tf32 for mobilenetv2; fp32 on the CPU)",
       [](TrainOptions& o, const std::string& v) {
         o.precision = one_of("precision", v, {"auto", "fp32", "tf32", "bf16"});
       },
       [](const TrainOptions& o) { return o.precision; }},
      {"cuda-graph", "on the GPU, capture the training step as a CUDA graph after 2 eager steps and replay it "
                     "(same results, far fewer launches); false runs every step eagerly", BOOL(cuda_graph)},
      {"seed", "seed for initialisation, data order and augmentation (0 .. 2^63-1)",
       [](TrainOptions& o, const std::string& v) {
         const int64_t x = to_int("seed", v);
         MDQ_CHECK(x >= 0, "--seed: " << x << " is negative; give a whole number from 0 to 2^63-1");
         o.seed = static_cast<uint64_t>(x);
       },
       [](const TrainOptions& o) { return std::to_string(o.seed); }},
      {"device", "auto | cpu | cuda",
       [](TrainOptions& o, const std::string& v) { o.device = one_of("device", v, {"auto", "cpu", "cuda"}); },
       [](const TrainOptions& o) { return o.device; }},
      {"out", "run folder: checkpoints, metrics.jsonl, config.txt", STR(out)},
      {"resume", "continue the run in --out from its last checkpoint, with its config.txt", BOOL(resume)},
      {"overwrite", "start afresh in an --out that already holds a run (its files are replaced)", BOOL(overwrite)},
      {"keep-first-last-float", "keep the first conv and the last linear layer in float", BOOL(keep_first_last_float)},
      {"ternary-start", "ternary tanh methods: scaled (every weight tensor scaled to mean |x~| 0.71) or classifier-xavier "
                        "(the same, but the layer that gives the logits keeps its Xavier draw)",
       [](TrainOptions& o, const std::string& v) {
         o.ternary_start = one_of("ternary-start", v, {"scaled", "classifier-xavier"});
       },
       [](const TrainOptions& o) { return o.ternary_start; }},
      {"e7-arithmetic", "md-tanh and md-softmax (E7): exact (log domain, every weight stays movable) or mdbnn "
                        "(md-bnn's f32 products, whose levels +-1 and u = 0 are absorbing)",
       [](TrainOptions& o, const std::string& v) {
         o.e7_arithmetic = one_of("e7-arithmetic", v, {"exact", "mdbnn"});
       },
       [](const TrainOptions& o) { return o.e7_arithmetic; }},
      {"bn-affine", "BatchNorm with affine parameters", BOOL(bn_affine)},
      {"act-bits", "32 (float activations) or 1 (sign activations, fully binary nets)", INT(act_bits)},
      {"val-fraction", "share of the training set held out for validation", REAL(val_fraction)},
      {"eval-every", "iterations between validations (0: once per epoch)", INT(eval_every)},
      {"ckpt-every", "iterations between checkpoints (0: at the validations, at most one a minute)", INT(ckpt_every)},
      {"log-every", "iterations between metric lines", INT(log_every)},
      {"max-eval-batches", "cap on batches per evaluation (0: all)", INT(max_eval_batches)},
      {"workers", "data loader threads (0: auto)", INT(workers)},
      {"quiet", "no progress bar", BOOL(quiet)},
      {"gpus", "train on N GPUs of this machine, one process each (data-parallel; or run under mpirun -np N)",
       INT(gpus)},
      {"sync-bn", "data-parallel: BatchNorm statistics over all ranks' images (default: per rank)", BOOL(sync_bn)},
      {"dist-timeout", "data-parallel: seconds a rank waits in a collective before stopping the run", REAL(dist_timeout)},
  };
  return k;
}

const Key& find_key(const std::string& name, const std::string& where) {
  for (const Key& k : keys())
    if (name == k.name) return k;
  std::string all;
  for (const Key& k : keys()) all += std::string(all.empty() ? "" : ", ") + k.name;
  MDQ_FAIL(where << "unknown option '" << name << "'. Allowed: " << all << ", config, help");
}

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r"), b = s.find_last_not_of(" \t\r");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

}  // namespace

std::string train_usage() {
  std::ostringstream s;
  s << "usage: mdq-train [--config FILE] [--key value ...]\n"
       "Trains a quantized network by mirror descent and reports the rounded network's test accuracy.\n\n";
  const TrainOptions defaults;
  for (const Key& k : keys()) {
    std::string flag = std::string("--") + k.name + (k.is_flag ? "" : " V");
    const std::string value = k.get(defaults);
    char line[320];
    std::snprintf(line, sizeof line, "  %-28s %s%s", flag.c_str(), k.help,
                  k.is_flag || value.empty() ? "" : (" [default: " + value + "]").c_str());
    s << line << "\n";
  }
  s << "  --config FILE                key = value lines with the keys above; flags override it\n"
       "  --help                       this text\n\n"
       "Exit status: 0 done; 2 bad input or error; 3 training diverged (a NaN/Inf loss or logit: the last\n"
       "good checkpoints are kept); 75 stopped by SIGINT/SIGTERM after saving last.ckpt (continue with\n"
       "mdq-train --resume --out DIR).\n";
  return s.str();
}

void load_config_text(const std::string& text, const std::string& origin, TrainOptions& o,
                      std::vector<std::string>* keys_set) {
  std::istringstream in(text);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    line = trim(line.substr(0, line.find('#')));
    if (line.empty()) continue;
    size_t eq = line.find('=');
    std::string where = origin + ":" + std::to_string(lineno) + ": ";
    MDQ_CHECK(eq != std::string::npos, where << "expected 'key = value', got '" << line << "'");
    const Key& k = find_key(trim(line.substr(0, eq)), where);
    k.set(o, trim(line.substr(eq + 1)));
    if (keys_set) keys_set->push_back(k.name);
  }
}

void load_config_file(const std::string& path, TrainOptions& o, std::vector<std::string>* keys_set) {
  struct stat st{};
  MDQ_CHECK(stat(path.c_str(), &st) == 0, "--config: cannot open '" << path << "': no such file");
  MDQ_CHECK(S_ISREG(st.st_mode), "--config: '" << path << "' is not a file (a config is key = value lines)");
  std::ifstream f(path);
  MDQ_CHECK(f.good(), "--config: cannot open '" << path << "'");
  std::stringstream buf;
  buf << f.rdbuf();
  load_config_text(buf.str(), path, o, keys_set);
}

std::string to_config_text(const TrainOptions& o) {
  // resume and overwrite say what to do with --out, not how the run trains: a run's config.txt
  // given back to --config starts the same run, and two runs that train alike save alike.
  std::string s;
  for (const Key& k : keys())
    if (std::string(k.name) != "resume" && std::string(k.name) != "overwrite")
      s += std::string(k.name) + " = " + k.get(o) + "\n";
  return s;
}

bool parse_train_args(int argc, char** argv, TrainOptions& o, std::vector<std::string>* given) {
  std::vector<std::string> args(argv, argv + argc);
  // The config file goes first so that flags override it, wherever --config stands.
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--help" || args[i] == "-h") {
      std::fputs(train_usage().c_str(), stdout);
      return false;
    }
    if (args[i] == "--config") {
      MDQ_CHECK(i + 1 < args.size(), "--config needs a file name");
      load_config_file(args[i + 1], o, given);  // every key the file sets counts as given
    }
  }
  bool flag_iters = false, flag_epochs = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    MDQ_CHECK(a.rfind("--", 0) == 0, "unexpected argument '" << a << "' (options look like --key value; see --help)");
    std::string name = a.substr(2), value;
    size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (name == "config") {
      ++i;
      continue;
    }
    const Key& k = find_key(name, "");
    if (eq == std::string::npos) {
      bool next_is_value = i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0;
      if (k.is_flag && !next_is_value) {
        value = "true";
      } else {
        MDQ_CHECK(next_is_value, "--" << name << " needs a value (" << k.help << ")");
        value = args[++i];
      }
    }
    k.set(o, value);
    if (given) given->push_back(name);
    flag_iters |= name == "iters";
    flag_epochs |= name == "epochs";
  }
  MDQ_CHECK(!(flag_iters && flag_epochs), "--iters and --epochs conflict: give one of them");
  if (flag_epochs) o.iters = 0;  // a flag overrides the config's length, whichever unit it used
  if (flag_iters) o.epochs = 0;
  MDQ_CHECK(o.batch_size > 0, "--batch-size must be positive, got " << o.batch_size);
  MDQ_CHECK(o.iters >= 0 && o.epochs >= 0, "--iters and --epochs must not be negative");
  MDQ_CHECK(o.val_fraction >= 0 && o.val_fraction < 1, "--val-fraction must be in [0, 1), got " << o.val_fraction);
  MDQ_CHECK(o.act_bits == 1 || o.act_bits == 32, "--act-bits must be 1 or 32, got " << o.act_bits);
  MDQ_CHECK(o.beta_interval > 0, "--beta-interval must be positive");
  MDQ_CHECK(o.gpus >= 0, "--gpus must not be negative, got " << o.gpus);
  MDQ_CHECK(o.dist_timeout > 0, "--dist-timeout must be positive, got " << o.dist_timeout);
  return true;
}

void validate_train_options(const TrainOptions& o) {
  auto finite_positive = [](const char* key, double v) {
    MDQ_CHECK(std::isfinite(v) && v > 0, "--" << key << " must be a finite positive number, got " << v);
  };
  finite_positive("lr", o.lr);
  finite_positive("lr-gamma", o.lr_gamma);
  finite_positive("beta-rho", o.beta_rho);
  MDQ_CHECK(std::isfinite(o.momentum) && o.momentum >= 0 && o.momentum < 1, "--momentum must be in [0, 1), got " << o.momentum);
  MDQ_CHECK(std::isfinite(o.weight_decay) && o.weight_decay >= 0, "--weight-decay must be finite and >= 0, got " << o.weight_decay);
  auto not_negative = [](const char* key, int64_t v) { MDQ_CHECK(v >= 0, "--" << key << " must not be negative, got " << v); };
  not_negative("eval-every", o.eval_every);
  not_negative("ckpt-every", o.ckpt_every);
  not_negative("max-eval-batches", o.max_eval_batches);
  not_negative("workers", o.workers);
  MDQ_CHECK(o.log_every > 0, "--log-every must be positive, got " << o.log_every);
  MDQ_CHECK(o.batch_size > 0, "--batch-size must be positive, got " << o.batch_size);
  MDQ_CHECK(o.beta_interval > 0, "--beta-interval must be positive, got " << o.beta_interval);
  MDQ_CHECK(!o.out.empty(), "--out must name a folder");
  // Names are checked here, before any data is read or folder made.
  const std::string models = models::supported_models();
  std::string list = ", " + models + ",";
  MDQ_CHECK(list.find(", " + o.model + ",") != std::string::npos,
            "--model: unknown model '" << o.model << "': supported models are " << models);
  quant::parse_method(o.method, o.levels);  // throws naming the method and the levels it supports
}

TrainOptions resume_options(const TrainOptions& cmdline, const std::vector<std::string>& given) {
  const std::string config = cmdline.out + "/config.txt";
  std::ifstream f(config);
  MDQ_CHECK(f.good(), "--resume: no run in '" << cmdline.out << "' (" << config
                                             << " is missing); start one without --resume");
  std::stringstream text;
  text << f.rdbuf();
  TrainOptions o;
  load_config_text(text.str(), config, o);
  // What fixes the data, the split, the shapes or the method cannot change inside a run.
  static const char* fixed[] = {"model", "dataset", "data-dir", "method", "levels", "batch-size", "seed",
                                "val-fraction", "optimizer", "bn-affine", "act-bits", "keep-first-last-float",
                                "ternary-start", "e7-arithmetic"};
  bool length_given = false;
  for (const std::string& name : given) {
    if (name == "resume" || name == "out" || name == "overwrite") continue;
    const Key& k = find_key(name, "");
    const std::string was = k.get(o), now = k.get(cmdline);
    for (const char* f : fixed)
      MDQ_CHECK(name != f || was == now, "--resume: the run in " << cmdline.out << " has " << name << " = " << was
                                             << "; this command asks for " << now << ". A run cannot change its "
                                             << name << " (use a fresh --out)");
    if (was != now) std::printf("resume: %s changes from %s to %s\n", name.c_str(), was.c_str(), now.c_str());
    k.set(o, now);
    length_given |= name == "iters" || name == "epochs";
  }
  if (length_given) {  // the command's length replaces the run's, whichever unit it used
    o.iters = cmdline.iters;
    o.epochs = cmdline.epochs;
  }
  o.resume = true;
  o.overwrite = false;
  o.out = cmdline.out;
  return o;
}

}  // namespace mdq::app

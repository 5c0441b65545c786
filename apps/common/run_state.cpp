#include "apps/common/run_state.h"

#include <sstream>

#include "engine/checkpoint.h"

namespace mdq::app {

int64_t add_buffers(std::vector<std::pair<std::string, Tensor>>& out, nn::Module& model) {
  int64_t values = 0;
  for (auto& [name, t] : model.buffers()) {
    out.emplace_back("buffer/" + name, *t);
    values += t->numel();
  }
  return values;
}

void restore_buffers(const Checkpoint& ck, nn::Module& model) {
  for (auto& [name, t] : model.buffers()) {
    const Tensor& s = ck.get("buffer/" + name);
    MDQ_CHECK(s.shape() == t->shape(), ck.path << ": buffer " << name << " has shape " << shape_str(s.shape())
                                               << ", the model wants " << shape_str(t->shape()));
    t->copy_from(s);
  }
}

namespace {

const char* kConfigHeader = "### options\n";
const char* kLoopHeader = "### loop\n";
const char* kQuantHeader = "### quantizer\n";

std::string section(const std::string& meta, const char* header) {
  size_t a = meta.find(header);
  if (a == std::string::npos) return "";
  a += std::string(header).size();
  size_t b = meta.find("### ", a);
  return meta.substr(a, b == std::string::npos ? std::string::npos : b - a);
}

void add_model(std::vector<std::pair<std::string, Tensor>>& out, nn::Module& model) {
  for (const nn::ParamRef& p : model.parameters()) out.emplace_back("param/" + p.name, p.var.value());
  add_buffers(out, model);
}

void restore_model(const Checkpoint& ck, nn::Module& model) {
  for (const nn::ParamRef& p : model.parameters()) {
    const Tensor& t = ck.get("param/" + p.name);
    MDQ_CHECK(t.shape() == p.var.value().shape(), "checkpoint: parameter " << p.name << " has shape "
                                                      << shape_str(t.shape()) << ", the model wants "
                                                      << shape_str(p.var.value().shape()));
    Var param = p.var;  // a handle: copying it shares the tensor the layer reads
    param.value().copy_from(t);
  }
  restore_buffers(ck, model);
}

std::string loop_text(const LoopState& s) {
  std::ostringstream o;
  o.precision(17);
  o << "iteration = " << s.iteration << "\nbest_val = " << s.best_val << "\nbest_iter = " << s.best_iter << "\n";
  return o.str();
}

LoopState parse_loop(const std::string& text) {
  LoopState s;
  std::istringstream in(text);
  std::string key, eq;
  while (in >> key >> eq) {
    if (key == "iteration") in >> s.iteration;
    else if (key == "best_val") in >> s.best_val;
    else if (key == "best_iter") in >> s.best_iter;
  }
  return s;
}

// Options that must match for a checkpoint to fit the model and the method.
void check_compatible(const TrainOptions& saved, const TrainOptions& now, const std::string& path) {
  auto same = [&](const char* what, const std::string& a, const std::string& b) {
    MDQ_CHECK(a == b, "checkpoint " << path << " was made with " << what << " = " << a << ", but this run has "
                                    << what << " = " << b << "; use a fresh --out or the same options");
  };
  same("model", saved.model, now.model);
  same("dataset", saved.dataset, now.dataset);
  same("method", saved.method, now.method);
  same("levels", std::to_string(saved.levels), std::to_string(now.levels));
  same("optimizer", saved.optimizer, now.optimizer);
  same("bn-affine", std::to_string(saved.bn_affine), std::to_string(now.bn_affine));
  same("act-bits", std::to_string(saved.act_bits), std::to_string(now.act_bits));
  same("keep-first-last-float", std::to_string(saved.keep_first_last_float), std::to_string(now.keep_first_last_float));
  same("seed", std::to_string(saved.seed), std::to_string(now.seed));
  same("batch-size", std::to_string(saved.batch_size), std::to_string(now.batch_size));
}

// A file of mdq-train (run or rounded network): refuses, with the way forward, a packed model
// of mdq-export or any other mdq file, before anything reads its options.
Checkpoint load_training_file(const std::string& path) {
  Checkpoint ck = load_checkpoint(path);
  MDQ_CHECK(ck.metadata.rfind("### packed-model", 0) != 0,
            path << " is a packed model (written by mdq-export), not a training checkpoint: run it with "
                    "mdq-infer --model " << path << ", or give last.ckpt/best.ckpt of the run");
  MDQ_CHECK(ck.metadata.rfind(kConfigHeader, 0) == 0,
            path << " is not a checkpoint of mdq-train (no options in it): give last.ckpt or best.ckpt of a run");
  return ck;
}

}  // namespace

void save_run(CheckpointWriter& writer, const std::string& path, const TrainOptions& o, nn::Module& model,
              quant::Quantizer& q, const LoopState& s) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  add_model(tensors, model);
  for (auto& [name, t] : q.state()) tensors.emplace_back("quant/" + name, *t);
  writer.save(path, tensors,
              kConfigHeader + to_config_text(o) + kLoopHeader + loop_text(s) + kQuantHeader + q.state_metadata());
}

LoopState load_run(const std::string& path, const TrainOptions& o, nn::Module& model, quant::Quantizer& q) {
  Checkpoint ck = load_training_file(path);
  TrainOptions saved;
  load_config_text(section(ck.metadata, kConfigHeader), path, saved);
  check_compatible(saved, o, path);
  restore_model(ck, model);
  for (auto& [name, t] : q.state()) {
    const Tensor& s = ck.get("quant/" + name);
    MDQ_CHECK(s.shape() == t->shape(), "checkpoint: quantizer state " << name << " has the wrong shape");
    t->copy_from(s);
  }
  q.load_state_metadata(section(ck.metadata, kQuantHeader));
  return parse_loop(section(ck.metadata, kLoopHeader));
}

void save_rounded(CheckpointWriter& writer, const std::string& path, const TrainOptions& o, nn::Module& model,
                  quant::Quantizer& q, const LoopState& s) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  q.apply_rounded();
  add_model(tensors, model);
  // The writer's snapshot copies them before the primal weights come back.
  writer.save(path, tensors, kConfigHeader + to_config_text(o) + kLoopHeader + loop_text(s));
  q.restore_primal();
}

bool has_quantizer_state(const std::string& path) {
  return load_training_file(path).metadata.find(kQuantHeader) != std::string::npos;
}

int64_t read_iteration(const std::string& path) {
  return parse_loop(section(load_training_file(path).metadata, kLoopHeader)).iteration;
}

TrainOptions read_options(const std::string& path) {
  Checkpoint ck = load_training_file(path);
  TrainOptions o;
  load_config_text(section(ck.metadata, kConfigHeader), path, o);
  return o;
}

void load_weights(const std::string& path, nn::Module& model) { restore_model(load_training_file(path), model); }

}  // namespace mdq::app

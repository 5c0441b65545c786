#include "engine/nn/module.h"

namespace mdq::nn {

Var Module::register_parameter(const std::string& name, Tensor init, ParamKind kind, int64_t fan_in,
                               int64_t fan_out) {
  Var v(std::move(init), true);
  params_.push_back({name, v, kind, fan_in, fan_out});
  return v;
}

Tensor& Module::register_buffer(const std::string& name, Tensor init) {
  buffers_.emplace_back(name, std::move(init));
  return buffers_.back().second;
}

std::string module_of(const std::string& param_name) {
  const size_t dot = param_name.rfind('.');
  return dot == std::string::npos ? std::string() : param_name.substr(0, dot);
}

void Module::collect(const std::string& prefix, std::vector<ParamRef>& out) const {
  for (const ParamRef& p : params_) {
    ParamRef q = p;
    q.name = prefix + p.name;
    out.push_back(q);
  }
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", out);
}

void Module::collect_buffers(const std::string& prefix, std::vector<std::pair<std::string, Tensor*>>& out) {
  for (auto& [name, t] : buffers_) out.emplace_back(prefix + name, &t);
  for (auto& [name, child] : children_) child->collect_buffers(prefix + name + ".", out);
}

std::vector<ParamRef> Module::parameters() const {
  std::vector<ParamRef> out;
  collect("", out);
  return out;
}

std::vector<std::pair<std::string, Tensor*>> Module::buffers() {
  std::vector<std::pair<std::string, Tensor*>> out;
  collect_buffers("", out);
  return out;
}

int64_t Module::parameter_count() const {
  int64_t n = 0;
  for (const ParamRef& p : parameters()) n += p.var.value().numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::to(Device device) {
  for (ParamRef& p : params_) {
    p.var.value() = p.var.value().to(device);
    p.var.zero_grad();
  }
  for (auto& [name, t] : buffers_) t = t.to(device);
  for (auto& [name, child] : children_) child->to(device);
}

Var Sequential::forward(const Var& x) {
  Var h = x;
  for (auto& layer : layers_) h = layer->forward(h);
  return h;
}

}  // namespace mdq::nn

// Module: a layer or a network. Holds named parameters (Vars that require grad), buffers
// (tensors that are state but not trained, e.g. BatchNorm running statistics) and children.
// Names are dotted paths ("layer1.0.conv1.weight"), used by checkpoints and by the quantizer
// to find every parameter of any model (DESIGN.md §2: quantization is a parameter property).
#pragma once
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/autograd.h"

namespace mdq::nn {

// What a parameter is for; decides its default initialisation and lets a caller keep e.g.
// biases or the first/last layer in float.
enum class ParamKind { Weight, Bias };

struct ParamRef {
  std::string name;
  Var var;
  ParamKind kind;
  int64_t fan_in;   // inputs per output, for Xavier init
  int64_t fan_out;
};
// The module a parameter belongs to: its name without the last component
// ("layer1.0.conv1.weight" -> "layer1.0.conv1").
std::string module_of(const std::string& param_name);

class Module {
 public:
  virtual ~Module() = default;
  virtual Var forward(const Var& x) = 0;
  Var operator()(const Var& x) { return forward(x); }

  std::vector<ParamRef> parameters() const;                       // this module and children
  std::vector<std::pair<std::string, Tensor*>> buffers();         // this module and children
  int64_t parameter_count() const;

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void to(Device device);  // moves parameters and buffers, in place (Var handles stay valid)
  // Direct children in registration order (for a Sequential: its layers in order), so code
  // outside the model (the inference lowering, engine/infer/lower.h) can walk a network's structure.
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }

 protected:
  Var register_parameter(const std::string& name, Tensor init, ParamKind kind, int64_t fan_in, int64_t fan_out);
  Tensor& register_buffer(const std::string& name, Tensor init);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    children_.emplace_back(name, m);
    return m;
  }

 private:
  void collect(const std::string& prefix, std::vector<ParamRef>& out) const;
  void collect_buffers(const std::string& prefix, std::vector<std::pair<std::string, Tensor*>>& out);
  std::vector<ParamRef> params_;
  std::deque<std::pair<std::string, Tensor>> buffers_;  // deque: references stay valid
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// Runs children in order.
class Sequential : public Module {
 public:
  Sequential() = default;
  template <class M>
  std::shared_ptr<M> add(std::shared_ptr<M> m) {
    return add(std::to_string(layers_.size()), std::move(m));
  }
  // A layer under a name of its own instead of its index (its parameters' names, the
  // checkpoint keys, then read "<name>.weight").
  template <class M>
  std::shared_ptr<M> add(const std::string& name, std::shared_ptr<M> m) {
    layers_.push_back(m);
    return register_module(name, m);
  }
  Var forward(const Var& x) override;
  size_t size() const { return layers_.size(); }

 private:
  std::vector<std::shared_ptr<Module>> layers_;
};

}  // namespace mdq::nn

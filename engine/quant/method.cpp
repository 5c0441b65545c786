// Method names and the table of supported (method, levels) pairs.
#include "engine/quant/method.h"

#include <sstream>
#include <vector>

#include "common/error.h"

namespace mdq::quant {
namespace {

struct Entry {
  const char* name;
  Rule rule;
  std::vector<int> levels;  // empty: any
  const char* why;          // why the level set is what it is
};

// The one table: names, rules, level sets. E7 tanh is binary only: its closed form (DESIGN.md
// E7) inverts E1, and the K-level tanh of E2 has no closed-form inverse.
const std::vector<Entry>& table() {
  static const std::vector<Entry> t = {
      {"float", Rule::Float, {}, "no projection"},
      {"bc", Rule::BinaryConnect, {2, 3}, "sign / nearest ternary level"},
      {"gd-tanh", Rule::GdTanh, {2, 3}, "tanh projection E1, E2"},
      {"md-tanh-s", Rule::MdTanhS, {2, 3}, "tanh projection E1, E2"},
      {"md-tanh", Rule::MdTanh, {2}, "E7 inverts E1 in closed form; binary only"},
      {"pmf", Rule::Pmf, {2, 3, 4}, "softmax levels {-1,1}, {-1,0,1}, {-2,-1,1,2}"},
      {"md-softmax-s", Rule::MdSoftmaxS, {2, 3, 4}, "softmax levels {-1,1}, {-1,0,1}, {-2,-1,1,2}"},
      {"md-softmax", Rule::MdSoftmax, {2, 3, 4}, "softmax levels {-1,1}, {-1,0,1}, {-2,-1,1,2}"},
  };
  return t;
}

}  // namespace

std::string Method::name() const {
  for (const Entry& e : table())
    if (e.rule == rule) return e.name;
  return "?";
}

std::string supported_methods() {
  std::ostringstream s;
  bool first = true;
  for (const Entry& e : table()) {
    s << (first ? "" : ", ") << e.name << " (levels ";
    if (e.levels.empty()) s << "any";
    for (size_t i = 0; i < e.levels.size(); ++i) s << (i ? "/" : "") << e.levels[i];
    s << ")";
    first = false;
  }
  return s.str();
}

Method parse_method(const std::string& name, int levels) {
  for (const Entry& e : table()) {
    if (name != e.name) continue;
    if (e.levels.empty()) return {e.rule, 2};
    for (int k : e.levels)
      if (k == levels) return {e.rule, levels};
    MDQ_FAIL("quantizer: method '" << name << "' does not support " << levels << " levels (" << e.why
                                   << "). Supported: " << supported_methods());
  }
  MDQ_FAIL("quantizer: unknown method '" << name << "'. Supported: " << supported_methods());
}

Dir parse_direction(const std::string& name, float momentum) {
  if (name == "adam") return Dir::Adam;
  if (name == "sgd") return momentum != 0.f ? Dir::Momentum : Dir::Sgd;
  MDQ_FAIL("quantizer: unknown direction '" << name << "'. Supported: sgd (with QuantConfig::momentum), adam");
}

const char* direction_name(Dir d) { return d == Dir::Adam ? "adam" : d == Dir::Momentum ? "sgd+momentum" : "sgd"; }

}  // namespace mdq::quant

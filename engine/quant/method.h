// A quantization method is a pair (projection, update rule) picked at run time by name and a
// number of levels (DESIGN.md §2: quantization is a parameter property, not a layer type).
// This file names the methods, says which (method, levels) pairs exist, and parses them.
#pragma once
#include <string>

#include "kernels/quant_math.h"

namespace mdq::quant {

struct Method {
  Rule rule = Rule::MdTanhS;
  int levels = 2;

  std::string name() const;  // "md-tanh-s", ...
  bool is_softmax() const { return is_softmax_rule(rule); }
  // E7 rules store the primal itself (x, or u), so a change of β leaves x alone.
  bool stores_primal() const { return rule == Rule::MdTanh || rule == Rule::MdSoftmax; }
  // Rules whose x depends on β: the stored variable is re-projected when β changes (E6, E10).
  bool projects_with_beta() const { return rule == Rule::GdTanh || rule == Rule::MdTanhS || rule == Rule::Pmf || rule == Rule::MdSoftmaxS; }
  // Floats per weight in the stored variable and in each moment: levels for softmax, else 1.
  int planes() const { return is_softmax() ? levels : 1; }
};

// Throws mdq::Error naming the method and listing what is supported for an unknown name or an
// unsupported (method, levels) pair. "float" accepts any levels (they do not matter).
Method parse_method(const std::string& name, int levels);
// "float (any), bc (2, 3), gd-tanh (2, 3), md-tanh-s (2, 3), md-tanh (2), pmf (2, 3, 4), ..."
std::string supported_methods();

// "adam" -> Adam; "sgd" -> Sgd, or Momentum when momentum != 0. Unknown names throw.
Dir parse_direction(const std::string& name, float momentum);
const char* direction_name(Dir d);

}  // namespace mdq::quant

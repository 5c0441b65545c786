// Walking a model's module tree into layers in forward order, shared by the inference runners
// (packed_runner.cpp: W1A16; binary_runner.cpp: W1A1): nested Sequentials are flattened, residual
// blocks (models/resnet18.cpp's BasicBlock) stay whole so a runner can fuse their sum.
#pragma once
#include <string>
#include <vector>

#include "engine/nn/module.h"

namespace mdq::infer::walk {

// A module of the walked tree, with its dotted name for messages ("1.0.body.3").
struct Item {
  std::string name;
  nn::Module* m;
};

// A block with children "body", optional "shortcut" and "act": forward = act(body(x) + skip),
// skip = shortcut(x) or x.
inline bool is_residual_block(const nn::Module& m) {
  const auto& ch = m.children();
  if (ch.size() != 2 && ch.size() != 3) return false;
  return ch.front().first == "body" && ch.back().first == "act" && (ch.size() == 2 || ch[1].first == "shortcut");
}

// The leaves of nested Sequentials in forward order; residual blocks stay whole.
inline void collect(const std::string& prefix, nn::Module& m, std::vector<Item>& out) {
  if (dynamic_cast<nn::Sequential*>(&m)) {
    for (const auto& [name, child] : m.children()) collect(prefix + name + ".", *child, out);
  } else {
    out.push_back({prefix.empty() ? prefix : prefix.substr(0, prefix.size() - 1), &m});
  }
}

}  // namespace mdq::infer::walk

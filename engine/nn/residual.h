// A residual block as a typed module: y = act(body(x) + skip), skip = shortcut(x), or x itself
// when there is no shortcut; act may be absent (MobileNetV2's linear bottleneck adds without
// one). Children are registered as "body", "shortcut", "act" in that order, so parameter names
// (the checkpoint keys) read "<block>.body.0.weight", "<block>.shortcut.0.weight". The inference
// lowering (engine/infer/lower.h) reads the parts through the accessors, not by name.
#pragma once
#include <memory>

#include "engine/nn/module.h"

namespace mdq::nn {

class Residual : public Module {
 public:
  // body is required; shortcut and act may be null.
  Residual(std::shared_ptr<Module> body, std::shared_ptr<Module> shortcut, std::shared_ptr<Module> act);
  Var forward(const Var& x) override;

  Module& body() const { return *body_; }
  Module* shortcut() const { return shortcut_.get(); }  // null: the identity
  Module* act() const { return act_.get(); }            // null: none

 private:
  std::shared_ptr<Module> body_, shortcut_, act_;
};

}  // namespace mdq::nn

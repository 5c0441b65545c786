#include "engine/nn/residual.h"

#include <typeinfo>

#include "common/error.h"
#include "engine/nn/activation.h"
#include "engine/nn/functional.h"

namespace mdq::nn {

Residual::Residual(std::shared_ptr<Module> body, std::shared_ptr<Module> shortcut, std::shared_ptr<Module> act)
    : body_(std::move(body)), shortcut_(std::move(shortcut)), act_(std::move(act)) {
  MDQ_CHECK(body_, "Residual: a block needs a body");
  register_module("body", body_);
  if (shortcut_) register_module("shortcut", shortcut_);
  if (act_) register_module("act", act_);
}

Var Residual::forward(const Var& x) {
  const Var skip = shortcut_ ? shortcut_->forward(x) : x;  // first, as the blocks did before (tape order)
  const Var body = body_->forward(x);
  // A plain ReLU after the sum runs in the same pass (nn::add_relu); the act module stays, so
  // parameter names, checkpoints and the inference lowering see the same tree.
  if (act_ && typeid(*act_) == typeid(ReLU)) return add_relu(body, skip);
  const Var y = add(body, skip);
  return act_ ? act_->forward(y) : y;
}

}  // namespace mdq::nn

// Per-element SGD-with-momentum math (DESIGN.md E8: SGD's direction is g, or its momentum
// average), shared by the CPU reference (engine/optim/sgd.cpp), the fused CUDA step
// (kernels/optim.cu) and the MD quantizer's dual update, so host and device cannot drift apart.
#pragma once

#include "kernels/optim_math.h"

namespace mdq {

// PyTorch semantics. g is the gradient after weight decay. With momentum 0 the direction is g
// and buf is not touched. Otherwise buf = momentum * buf + g, except on a parameter's first step,
// where buf = g; the direction is buf, or g + momentum * buf with Nesterov.
MDQ_HD inline float sgd_direction(float g, float& buf, float momentum, bool nesterov, bool first_step) {
  if (momentum == 0.0f) return g;
  buf = first_step ? g : momentum * buf + g;
  return nesterov ? g + momentum * buf : buf;
}

}  // namespace mdq

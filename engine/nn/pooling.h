// Differentiable pooling on NCHW and its modules: max, average (count_include_pad = true) and
// global average ([N, C, H, W] -> [N, C]). Window rules: engine/ops/pooling.h.
#pragma once
#include "engine/nn/module.h"

namespace mdq::nn {

Var max_pool2d(const Var& x, int64_t kernel, int64_t stride, int64_t padding);
Var avg_pool2d(const Var& x, int64_t kernel, int64_t stride, int64_t padding);
Var global_avg_pool(const Var& x);

class MaxPool2d : public Module {
 public:
  MaxPool2d(int64_t kernel, int64_t stride, int64_t padding = 0)
      : kernel_(kernel), stride_(stride), padding_(padding) {}
  Var forward(const Var& x) override { return max_pool2d(x, kernel_, stride_, padding_); }
  int64_t kernel() const { return kernel_; }
  int64_t stride() const { return stride_; }
  int64_t padding() const { return padding_; }

 private:
  int64_t kernel_, stride_, padding_;
};

class AvgPool2d : public Module {
 public:
  AvgPool2d(int64_t kernel, int64_t stride, int64_t padding = 0)
      : kernel_(kernel), stride_(stride), padding_(padding) {}
  Var forward(const Var& x) override { return avg_pool2d(x, kernel_, stride_, padding_); }

 private:
  int64_t kernel_, stride_, padding_;
};

class GlobalAvgPool : public Module {
 public:
  GlobalAvgPool() = default;
  Var forward(const Var& x) override { return global_avg_pool(x); }
};

}  // namespace mdq::nn

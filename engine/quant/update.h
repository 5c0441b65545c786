// The fused quantizer step on tensors (DESIGN.md E6–E9 with the E8 direction): the CPU
// reference loop, or the CUDA kernels of kernels/quant_update.cu, over the same per-element math.
// step_tensors steps one parameter; MultiStep steps many at once, one launch on the GPU.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/quant/method.h"
#include "engine/tensor.h"
#include "kernels/quant_update.h"

namespace mdq::quant {

// Reads stored, grad (= ∂L/∂x, the shape of primal) and the moments; writes stored, the
// moments and primal. Tanh family: stored, m, v have primal's shape; softmax: [levels, *shape].
// m must be defined iff uses_m(dir), v iff uses_v(dir). All on one device.
void step_tensors(const Method& method, Dir dir, const StepArgs& args, Tensor& stored, const Tensor& grad, Tensor& m,
                  Tensor& v, Tensor& primal);

// One parameter's arrays, as step_tensors takes them (m and v point to undefined tensors when
// the direction has none).
struct StepTensors {
  Tensor* stored;
  const Tensor* grad;
  Tensor* m;
  Tensor* v;
  Tensor* primal;
};

// Steps many parameters of one method and direction with one StepArgs, each exactly as
// step_tensors would (bit for bit). On the GPU: one launch per kernels::kQuantMultiMax
// parameters, over a device table of their arrays (kernels/quant_update.h). A table is built
// and uploaded the first time a set of parameters is stepped and reused while their stored
// variables, moments and primals stay where they are (in a run, always): a step in steady state
// allocates and uploads nothing. Grads may move from step to step (they travel as kernel
// arguments). On the CPU: step_tensors on each. The parameters share one device.
class MultiStep {
 public:
  void step(const Method& method, Dir dir, const StepArgs& args, const std::vector<StepTensors>& params);
  int64_t tables_built() const { return tables_built_; }  // uploads so far
  // The GPU launches a step of `count` parameters makes (a CUDA graph rewrites each one's StepArgs).
  static int gpu_launches(size_t count) {
    return static_cast<int>((count + kernels::kQuantMultiMax - 1) / kernels::kQuantMultiMax);
  }

 private:
  struct Table {
    std::vector<kernels::QuantStepTensor> tensors;  // what it was built from: the cache key
    int64_t work = 0;
    Tensor device;                                  // u8, quant_step_table_fill's image
  };
  const Table& table_for(const kernels::QuantStepTensor* tensors, int count);

  std::vector<Table> tables_;  // the most recently built last
  int64_t tables_built_ = 0;
  std::vector<kernels::QuantStepTensor> scratch_;  // kept so that a step allocates nothing on the host either
  std::vector<const float*> grads_;
};

}  // namespace mdq::quant

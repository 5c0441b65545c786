// A CUDA graph of the engine's stream: the GPU work some host code queues, captured once and
// replayed with one launch (kernels/cuda_graph.h). engine/train_step.h captures a training step.
//
//   CudaGraph g;
//   g.capture([&] { ...ops on CUDA tensors... });   // queues nothing: records
//   g.replay();                                      // runs what was recorded, on the same buffers
//
// A replay reads and writes the very tensors the capture used: inputs are refreshed by copying
// into them, outputs are read from them. Tensors allocated during the capture come from a pool of
// the graph's own (it lives until the graph is destroyed). What the host code decided while
// capturing (shapes, branches, scalar kernel arguments) is fixed, except the MD update's
// StepArgs, which set_step_args rewrites (engine/quant/quantizer.h: step_replayed).
#pragma once
#include <functional>

#include "kernels/quant_math.h"  // quant::StepArgs

namespace mdq {

class CudaGraph {
 public:
  CudaGraph() = default;
  ~CudaGraph();  // waits for queued replays
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Records the GPU work `work` queues. Throws (with nothing captured) when `work` throws or
  // queues something a graph cannot hold, naming CUDA's error. A second capture replaces the first.
  void capture(const std::function<void()>& work);
  bool captured() const { return graph_ != nullptr; }
  void replay() const;  // queues one replay on the engine's stream

  // The MD update launches recorded, in launch order, and the StepArgs of launch i from now on.
  int step_args_count() const;
  void set_step_args(int i, const quant::StepArgs& args);

  // Whether the engine's stream is being captured now (false in a build without CUDA).
  static bool capturing();

 private:
  void release();
  void* graph_ = nullptr;
};

}  // namespace mdq

// CudaGraph (engine/cuda_graph.h): the engine's side of kernels/cuda_graph.cu, through the registry.
#include "engine/cuda_graph.h"

#include "engine/backend/registry.h"

namespace mdq {

using backend::CudaBackend;
using backend::cuda_impl;

CudaGraph::~CudaGraph() { release(); }

void CudaGraph::release() {
  if (graph_) backend::cuda().graph_destroy(graph_);
  graph_ = nullptr;
}

void CudaGraph::capture(const std::function<void()>& work) {
  release();
  const char* op = "CUDA graph capture";
  cuda_impl(op, &CudaBackend::graph_capture_begin)();
  try {
    work();
  } catch (...) {
    try {  // end the capture, whatever it holds, so that the stream works again
      backend::cuda().graph_destroy(backend::cuda().graph_capture_end());
    } catch (...) {
    }
    throw;
  }
  graph_ = cuda_impl(op, &CudaBackend::graph_capture_end)();
}

void CudaGraph::replay() const {
  MDQ_CHECK(graph_, "CudaGraph::replay: nothing was captured");
  backend::cuda().graph_replay(graph_);
}

int CudaGraph::step_args_count() const { return graph_ ? backend::cuda().graph_step_args_count(graph_) : 0; }

void CudaGraph::set_step_args(int i, const quant::StepArgs& args) {
  MDQ_CHECK(graph_, "CudaGraph::set_step_args: nothing was captured");
  backend::cuda().graph_set_step_args(graph_, i, args);
}

bool CudaGraph::capturing() {
  const auto fn = backend::cuda().graph_capturing;
  return fn && fn();
}

}  // namespace mdq

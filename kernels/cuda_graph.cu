// CUDA graphs of the engine's stream (kernels/cuda_graph.h).
#include "kernels/cuda_graph.h"

#include <cstring>
#include <vector>

#include "common/error.h"
#include "kernels/backend.h"
#include "kernels/cuda_common.h"
#include "kernels/device_memory.h"

namespace mdq::kernels {
namespace {

// A kernel node whose StepArgs argument is rewritten before replays.
struct StepArgsNode {
  cudaGraphNode_t node;
  int arg, arity;
};

struct Graph {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  int pool = 0;  // the allocator's private pool of this graph's tensors
  std::vector<StepArgsNode> step_args;
};

// The capture in progress (one at a time: all work is on one stream).
struct Capture {
  bool active = false;
  int pool = 0;
  std::vector<StepArgsNode> step_args;
};
Capture& capture() {
  static Capture c;
  return c;
}

Graph* as_graph(void* g) {
  MDQ_CHECK(g, "CUDA graph: null graph handle");
  return static_cast<Graph*>(g);
}

}  // namespace

bool graph_capturing() {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  CUDA_CHECK(cudaStreamIsCapturing(cuda::stream(), &status));
  return status != cudaStreamCaptureStatusNone;
}

void graph_capture_begin() {
  Capture& c = capture();
  MDQ_CHECK(!c.active, "CUDA graph: a capture is already running");
  c.step_args.clear();
  c.pool = allocator_pool_begin();
  const cudaError_t e = cudaStreamBeginCapture(cuda::stream(), cudaStreamCaptureModeThreadLocal);
  if (e != cudaSuccess) {
    allocator_pool_end();
    allocator_pool_release(c.pool);
    cuda::throw_cuda_error(e, "cudaStreamBeginCapture", __FILE__, __LINE__);
  }
  c.active = true;
}

void* graph_capture_end() {
  Capture& c = capture();
  MDQ_CHECK(c.active, "CUDA graph: no capture is running");
  c.active = false;
  allocator_pool_end();
  auto* g = new Graph();
  g->pool = c.pool;
  g->step_args.swap(c.step_args);
  cudaError_t e = cudaStreamEndCapture(cuda::stream(), &g->graph);
  if (e == cudaSuccess) e = cudaGraphInstantiate(&g->exec, g->graph, 0);
  if (e != cudaSuccess) {
    cudaGetLastError();  // the capture's error is reported here, not left for the next call
    if (g->graph) cudaGraphDestroy(g->graph);
    allocator_pool_release(g->pool);
    delete g;
    MDQ_FAIL("CUDA graph: capturing the stream failed: " << cudaGetErrorString(e)
             << " (an operation that cannot be captured ran: a host synchronisation, a copy from pageable "
                "host memory, or a cudaMalloc outside the allocator)");
  }
  return g;
}

void graph_replay(void* graph) { CUDA_CHECK(cudaGraphLaunch(as_graph(graph)->exec, cuda::stream())); }

void graph_destroy(void* graph) {
  if (!graph) return;
  Graph* g = static_cast<Graph*>(graph);
  cudaStreamSynchronize(cuda::stream());  // its replays may still be running
  if (g->exec) cudaGraphExecDestroy(g->exec);
  if (g->graph) cudaGraphDestroy(g->graph);
  allocator_pool_release(g->pool);
  delete g;
}

void graph_note_step_args(int arg, int arity) {
  Capture& c = capture();
  if (!c.active) return;
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  const cudaGraphNode_t* deps = nullptr;
  size_t n = 0;
  CUDA_CHECK(cudaStreamGetCaptureInfo(cuda::stream(), &status, nullptr, nullptr, &deps, nullptr, &n));
  MDQ_CHECK(status == cudaStreamCaptureStatusActive,
            "CUDA graph: the capture was invalidated before the MD update (an operation that cannot be captured ran)");
  // On one stream, the node just captured is the only dependency of the next one.
  MDQ_CHECK(n == 1, "CUDA graph: cannot find the MD update's launch in the capture (" << n << " dependencies)");
  c.step_args.push_back({deps[0], arg, arity});
}

int graph_step_args_count(void* graph) { return static_cast<int>(as_graph(graph)->step_args.size()); }

void graph_set_step_args(void* graph, int i, const quant::StepArgs& args) {
  Graph* g = as_graph(graph);
  MDQ_CHECK(i >= 0 && i < static_cast<int>(g->step_args.size()),
            "CUDA graph: MD update launch " << i << " of " << g->step_args.size());
  const StepArgsNode& s = g->step_args[static_cast<size_t>(i)];
  cudaKernelNodeParams p{};
  CUDA_CHECK(cudaGraphKernelNodeGetParams(s.node, &p));  // the captured arguments
  std::vector<void*> params(p.kernelParams, p.kernelParams + s.arity);
  quant::StepArgs copy = args;  // read by the call below, which copies it into the graph
  params[static_cast<size_t>(s.arg)] = &copy;
  p.kernelParams = params.data();
  p.extra = nullptr;
  CUDA_CHECK(cudaGraphExecKernelNodeSetParams(g->exec, s.node, &p));
}

void register_cuda_graph(CudaBackend& b) {
  b.graph_capture_begin = graph_capture_begin;
  b.graph_capture_end = graph_capture_end;
  b.graph_capturing = graph_capturing;
  b.graph_replay = graph_replay;
  b.graph_destroy = graph_destroy;
  b.graph_step_args_count = graph_step_args_count;
  b.graph_set_step_args = graph_set_step_args;
}

}  // namespace mdq::kernels

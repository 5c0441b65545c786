// CUDA graphs of the engine's stream (kernels/cuda_graph.cu): capture what the host queues once,
// replay it with one launch. engine/cuda_graph.h wraps these for the engine (a training step,
// engine/train_step.h). Plain C++; graphs are opaque handles.
//
// While a capture runs, the caching allocator serves this process from a pool of its own
// (device_memory.h): the graph's intermediate tensors keep their addresses from one replay to the
// next, and nothing allocated outside the capture (the loader's next batch, an evaluation) can
// land in them.
//
// A replay repeats the captured kernels with the captured arguments. The one argument that
// changes from step to step is the MD update's StepArgs (learning rate, β, Adam's bias
// corrections): quant_step_multi notes each of its launches while capturing, and
// graph_set_step_args rewrites that launch's StepArgs in the instantiated graph before a replay.
#pragma once
#include "kernels/quant_math.h"

namespace mdq::kernels {

// Begins capturing the engine's stream (thread-local mode: other threads' CUDA calls are not
// captured), with allocations going to a new private pool. Throws when a capture already runs.
void graph_capture_begin();
// Ends the capture and instantiates it; returns the graph. Throws with CUDA's error when the
// capture was invalidated (an operation that cannot be captured: a host synchronisation, a copy
// from pageable memory); the capture is over either way.
void* graph_capture_end();
bool graph_capturing();          // is the engine's stream being captured now?
void graph_replay(void* graph);  // queues one replay on the engine's stream
void graph_destroy(void* graph); // after its queued replays; its private pool goes back to the cache

// quant_step_multi, right after a launch under capture: that launch's StepArgs is argument
// `arg` of `arity`. The graph keeps these in launch order.
void graph_note_step_args(int arg, int arity);
int graph_step_args_count(void* graph);
// The StepArgs of noted launch `i` in the graph's next replays.
void graph_set_step_args(void* graph, int i, const quant::StepArgs& args);

}  // namespace mdq::kernels

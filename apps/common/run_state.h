// What a training run saves and restores: model parameters and buffers, the quantizer's state
// (stored variables, moments, β, its counters) and the loop's position. One checkpoint file,
// written atomically by engine/checkpoint (magic, version, checksum).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "apps/common/options.h"
#include "engine/checkpoint.h"
#include "engine/nn/module.h"
#include "engine/quant/quantizer.h"

namespace mdq::app {

// Model buffers (BatchNorm running statistics) as "buffer/<name>" entries of a file, and back;
// every file mdq writes (run checkpoints, rounded networks, packed models) stores them this way.
int64_t add_buffers(std::vector<std::pair<std::string, Tensor>>& out, nn::Module& model);  // returns values added
void restore_buffers(const Checkpoint& ck, nn::Module& model);

struct LoopState {
  int64_t iteration = 0;
  double best_val = -1;    // best rounded validation top-1 so far
  int64_t best_iter = -1;
};

// Through `writer`: on disk once writer.wait() returns (engine/checkpoint.h, CheckpointWriter).
void save_run(CheckpointWriter& writer, const std::string& path, const TrainOptions& o, nn::Module& model,
              quant::Quantizer& q, const LoopState& s);
// Restores into a model and quantizer built from the same options; refuses a checkpoint whose
// options differ in anything that changes shapes or the method.
LoopState load_run(const std::string& path, const TrainOptions& o, nn::Module& model, quant::Quantizer& q);

// The rounded network alone (E11), for mdq-eval and export: parameters after rounding + buffers.
void save_rounded(CheckpointWriter& writer, const std::string& path, const TrainOptions& o, nn::Module& model,
                  quant::Quantizer& q, const LoopState& s);
// Loads parameters and buffers saved by save_run or save_rounded into a model; returns the options.
TrainOptions read_options(const std::string& path);
// True for a full run checkpoint (last.ckpt: primal weights + quantizer state), false for a
// rounded one (best.ckpt).
bool has_quantizer_state(const std::string& path);
// The iteration a checkpoint of save_run or save_rounded was written at.
int64_t read_iteration(const std::string& path);
void load_weights(const std::string& path, nn::Module& model);

}  // namespace mdq::app

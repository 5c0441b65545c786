// The packed model file that mdq-export writes and mdq-infer reads: the rounded network (E11)
// with every binary parameter stored as sign bits (32 weights per u32 word) and every ternary one
// as two bit planes (sign, non-zero); other tensors (BN statistics, float layers) stay f32.
// The container is engine/checkpoint's (magic, version, checksum; refused when corrupt); the
// metadata starts with "### packed-model v1" so a training checkpoint is never mistaken for one.
#pragma once
#include <cstdint>
#include <string>

#include "apps/common/options.h"
#include "engine/nn/module.h"

namespace mdq::app {

struct PackedStats {
  int64_t binary_params = 0, ternary_params = 0, float_values = 0;
};

// Packs a model that holds rounded weights (load a best.ckpt into it first).
PackedStats save_packed_model(const std::string& path, const TrainOptions& o, nn::Module& model);
// The options the model was trained with, for building the network to unpack into.
TrainOptions read_packed_options(const std::string& path);
// Unpacks the file's parameters and buffers into a model built from read_packed_options.
void load_packed_model(const std::string& path, nn::Module& model);

}  // namespace mdq::app

// Networks whose parameters are random quantization levels: for timing and checking the packed
// inference engines without a trained model (mdq-infer --random-model, bench_packed_resnet18,
// the lowering tests). Every parameter (weights and biases) becomes a random ±1 (levels 2) or
// {-1, 0, 1} (levels 3, about a third each), and each BatchNorm gets running statistics sized
// from the fan-in of the layer before it, so that activations stay O(1) through 20 layers while
// the folded scale and shift are far from 1 and 0.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "engine/nn/module.h"
#include "models/model_zoo.h"

namespace mdq::models {

// In place, on a model in registration order = forward order (the model zoo's); leaves it in
// eval mode. A BatchNorm after a layer of fan-in f gets var = f · U(0.25, 1) and mean =
// sqrt(f) · U(-0.5, 0.5): a ±1 layer over f inputs of size ~1 has outputs of variance ~f / 2.
void round_randomly(nn::Module& model, int levels, uint64_t seed);

// make_model(name, options), then round_randomly. CPU tensors.
std::shared_ptr<nn::Module> rounded_model(const std::string& name, const ModelOptions& options, int levels,
                                          uint64_t seed);

}  // namespace mdq::models

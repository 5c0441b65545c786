// Builds a run's model and quantizer from its options, the same way for mdq-train and mdq-eval,
// so a checkpoint always meets the network it was made from.
#pragma once
#include <memory>

#include "apps/common/options.h"
#include "data/dataset.h"
#include "engine/nn/module.h"
#include "engine/quant/quantizer.h"

namespace mdq::app {

std::shared_ptr<nn::Module> build_model(const TrainOptions& o, const data::DatasetInfo& info);
// One QuantParam per parameter of the model (on the model's current device); with
// --keep-first-last-float, the first conv and the last linear layer use method "float".
std::unique_ptr<quant::Quantizer> build_quantizer(const TrainOptions& o, nn::Module& model);

}  // namespace mdq::app

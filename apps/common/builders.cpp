#include "apps/common/builders.h"

#include "models/model_zoo.h"

namespace mdq::app {
namespace {

// First conv weight, last linear weight and bias: the layers --keep-first-last-float keeps in float.
std::function<bool(const nn::ParamRef&)> first_last_filter(const std::vector<nn::ParamRef>& params) {
  const std::string first = nn::module_of(params.front().name), last = nn::module_of(params.back().name);
  return [first, last](const nn::ParamRef& p) {
    const std::string m = nn::module_of(p.name);
    return m == first || m == last;
  };
}

}  // namespace

std::shared_ptr<nn::Module> build_model(const TrainOptions& o, const data::DatasetInfo& info) {
  models::ModelOptions mo;
  mo.num_classes = info.num_classes;
  mo.in_channels = info.channels;
  mo.image_size = info.height;
  mo.bn_affine = o.bn_affine;
  mo.act_bits = o.act_bits;
  mo.seed = o.seed;
  return models::make_model(o.model, mo);
}

std::unique_ptr<quant::Quantizer> build_quantizer(const TrainOptions& o, nn::Module& model) {
  quant::QuantConfig qc;
  qc.method = o.method;
  qc.levels = o.levels;
  qc.direction = o.optimizer;
  qc.rho = o.beta_rho;
  qc.interval = o.beta_interval;
  qc.momentum = o.optimizer == "sgd" ? o.momentum : 0.f;
  qc.weight_decay = o.weight_decay;
  qc.seed = o.seed;
  qc.ternary_start = o.ternary_start;
  qc.e7_arithmetic = o.e7_arithmetic;
  auto params = model.parameters();
  return std::make_unique<quant::Quantizer>(params, qc, o.keep_first_last_float ? first_last_filter(params) : nullptr);
}

}  // namespace mdq::app

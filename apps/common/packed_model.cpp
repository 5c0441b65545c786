#include "apps/common/packed_model.h"

#include "apps/common/run_state.h"
#include "engine/checkpoint.h"
#include "engine/packed/bitpack.h"

namespace mdq::app {
namespace {

const char* kHeader = "### packed-model v1\n";


Tensor flat_row(const Tensor& t) { return t.cpu().reshape({1, t.numel()}); }

}  // namespace

PackedStats save_packed_model(const std::string& path, const TrainOptions& o, nn::Module& model) {
  PackedStats stats;
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const nn::ParamRef& p : model.parameters()) {
    const Tensor& w = p.var.value();
    switch (packed::level_set(w)) {
      case 2:
        tensors.emplace_back("bits/" + p.name, packed::pack_signs(flat_row(w)));
        stats.binary_params += w.numel();
        break;
      case 3: {
        packed::TernaryPlanes planes = packed::pack_ternary(flat_row(w));
        tensors.emplace_back("sign/" + p.name, planes.sign);
        tensors.emplace_back("nonzero/" + p.name, planes.nonzero);
        stats.ternary_params += w.numel();
        break;
      }
      default:
        tensors.emplace_back("float/" + p.name, w.cpu());
        stats.float_values += w.numel();
    }
  }
  stats.float_values += add_buffers(tensors, model);
  save_checkpoint(path, tensors, kHeader + to_config_text(o));
  return stats;
}

TrainOptions read_packed_options(const std::string& path) {
  Checkpoint ck = load_checkpoint(path);
  MDQ_CHECK(ck.metadata.rfind(kHeader, 0) == 0,
            path << " is not a packed model (it is a training checkpoint?): make one with mdq-export");
  TrainOptions o;
  load_config_text(ck.metadata.substr(std::string(kHeader).size()), path, o);
  return o;
}

void load_packed_model(const std::string& path, nn::Module& model) {
  Checkpoint ck = load_checkpoint(path);
  MDQ_CHECK(ck.metadata.rfind(kHeader, 0) == 0, path << " is not a packed model: make one with mdq-export");
  for (const nn::ParamRef& p : model.parameters()) {
    Var param = p.var;  // a handle: writing through it updates the layer's tensor
    Tensor& w = param.value();
    Tensor values;
    if (ck.has("bits/" + p.name)) {
      values = packed::unpack_signs(ck.get("bits/" + p.name), w.numel());
    } else if (ck.has("sign/" + p.name)) {
      values = packed::unpack_ternary({ck.get("sign/" + p.name), ck.get("nonzero/" + p.name)}, w.numel());
    } else {
      values = ck.get("float/" + p.name);
    }
    MDQ_CHECK(values.numel() == w.numel(), path << ": parameter " << p.name << " has " << values.numel()
                                                << " values, the model wants " << w.numel());
    w.copy_from(values.reshape(w.shape()));
  }
  restore_buffers(ck, model);
}

}  // namespace mdq::app

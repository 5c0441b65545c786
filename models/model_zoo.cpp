#include "models/model_zoo.h"

#include "common/error.h"
#include "models/layers_util.h"

namespace mdq::models {

const char* supported_models() { return "resnet18, vgg16, mobilenetv2, smallcnn"; }

std::shared_ptr<nn::Module> make_model(const std::string& name, const ModelOptions& o) {
  MDQ_CHECK(o.num_classes > 0 && o.in_channels > 0 && o.image_size > 0,
            "make_model: bad options (classes " << o.num_classes << ", channels " << o.in_channels
                                                << ", image size " << o.image_size << ")");
  MDQ_CHECK(o.act_bits == 1 || o.act_bits == 32, "make_model: --act-bits must be 1 or 32, got " << o.act_bits);
  if (name == "resnet18") return make_resnet18(o);
  if (name == "vgg16") return make_vgg16(o);
  if (name == "mobilenetv2") return make_mobilenetv2(o);
  if (name == "smallcnn") return make_smallcnn(o);
  MDQ_FAIL("unknown model '" << name << "': supported models are " << supported_models());
}

}  // namespace mdq::models

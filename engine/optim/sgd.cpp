// SGD step: a plain CPU loop over kernels/sgd_math.h, or the fused kernel in kernels/optim.cu.
#include "engine/optim/sgd.h"

#include "kernels/sgd_math.h"
#ifdef MDQ_HAS_CUDA
#include "kernels/optim.h"
#endif

namespace mdq::optim {

SGD::SGD(std::vector<nn::ParamRef> params, SGDOptions o) : Optimizer(std::move(params)), options_(o) {
  MDQ_CHECK(o.momentum >= 0 && o.weight_decay >= 0,
            "SGD: momentum (" << o.momentum << ") and weight_decay (" << o.weight_decay << ") must be >= 0");
  MDQ_CHECK(!o.nesterov || o.momentum > 0, "SGD: nesterov needs momentum > 0");
  if (o.momentum != 0) {
    for (const nn::ParamRef& p : params_)
      buffers_.push_back(Tensor::zeros(p.var.value().shape(), DType::F32, p.var.value().device()));
  }
}

void SGD::step(float lr) {
  count_step();
  const bool has_momentum = options_.momentum != 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor* grad = usable_grad("SGD::step", i);
    if (!grad) continue;
    Tensor& w = params_[i].var.value();
    const bool first = count_update(i) == 1;
    float* buf = nullptr;
    if (has_momentum) {
      follow_device(buffers_[i], w);
      buf = buffers_[i].data<float>();
    }
    const int64_t n = w.numel();
    if (w.is_cuda()) {
#ifdef MDQ_HAS_CUDA
      kernels::sgd_step_f32(w.data<float>(), grad->data<float>(), buf, n, lr, options_.weight_decay,
                            options_.momentum, options_.nesterov, first);
#endif
      continue;
    }
    float* pw = w.data<float>();
    const float* pg = grad->data<float>();
    for (int64_t k = 0; k < n; ++k) {
      float b = has_momentum ? buf[k] : 0.0f;
      pw[k] -= lr * sgd_direction(l2_decayed(pg[k], pw[k], options_.weight_decay), b, options_.momentum,
                                  options_.nesterov, first);
      if (has_momentum) buf[k] = b;
    }
  }
}

std::vector<std::pair<std::string, Tensor*>> SGD::state() {
  std::vector<std::pair<std::string, Tensor*>> out = Optimizer::state();
  for (size_t i = 0; i < buffers_.size(); ++i) out.emplace_back("optim.momentum_buffer." + param_key(i), &buffers_[i]);
  return out;
}

}  // namespace mdq::optim

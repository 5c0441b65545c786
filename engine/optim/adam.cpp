// Adam step: a plain CPU loop over kernels/adam_math.h, or the fused kernel in kernels/optim.cu.
#include "engine/optim/adam.h"

#include "kernels/adam_math.h"
#ifdef MDQ_HAS_CUDA
#include "kernels/optim.h"
#endif

namespace mdq::optim {

Adam::Adam(std::vector<nn::ParamRef> params, AdamOptions o) : Optimizer(std::move(params)), options_(o) {
  MDQ_CHECK(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1,
            "Adam: betas must lie in [0, 1), got beta1 " << o.beta1 << ", beta2 " << o.beta2);
  MDQ_CHECK(o.eps >= 0 && o.weight_decay >= 0,
            "Adam: eps (" << o.eps << ") and weight_decay (" << o.weight_decay << ") must be >= 0");
  for (const nn::ParamRef& p : params_) {
    m_.push_back(Tensor::zeros(p.var.value().shape(), DType::F32, p.var.value().device()));
    v_.push_back(Tensor::zeros(p.var.value().shape(), DType::F32, p.var.value().device()));
  }
}

int64_t Adam::steps() const { return steps_.data<int32_t>()[0]; }

void Adam::step(float lr) {
  count_step();
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor* grad = usable_grad("Adam::step", i);
    if (!grad) continue;
    Tensor& w = params_[i].var.value();
    const AdamMoments a = adam_moments(options_.beta1, options_.beta2, options_.eps, count_update(i));
    follow_device(m_[i], w);
    follow_device(v_[i], w);
    const int64_t n = w.numel();
    if (w.is_cuda()) {
#ifdef MDQ_HAS_CUDA
      kernels::adam_step_f32(w.data<float>(), grad->data<float>(), m_[i].data<float>(), v_[i].data<float>(), n, lr,
                             options_.weight_decay, a);
#endif
      continue;
    }
    float* pw = w.data<float>();
    const float* pg = grad->data<float>();
    float* pm = m_[i].data<float>();
    float* pv = v_[i].data<float>();
    for (int64_t k = 0; k < n; ++k)
      pw[k] -= lr * adam_direction(l2_decayed(pg[k], pw[k], options_.weight_decay), pm[k], pv[k], a);
  }
}

std::vector<std::pair<std::string, Tensor*>> Adam::state() {
  std::vector<std::pair<std::string, Tensor*>> out = Optimizer::state();
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back("optim.exp_avg." + param_key(i), &m_[i]);
    out.emplace_back("optim.exp_avg_sq." + param_key(i), &v_[i]);
  }
  return out;
}

}  // namespace mdq::optim

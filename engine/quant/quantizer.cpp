// Quantizer: builds the per-parameter state, runs the fused step over all parameters (grouped,
// one multi-tensor step per group), anneals β (E10), swaps rounded weights in for evaluation
// (E11) and saves/restores its state.
#include "engine/quant/quantizer.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "engine/ops/elementwise.h"
#include "engine/random.h"
#include "engine/quant/projection.h"
#include "engine/quant/update.h"

namespace mdq::quant {
namespace {

// E7 stores probabilities, not logits: host planes [K][n] of ũ become u = softmax(β ũ) in place.
void logits_to_probabilities(Tensor& planes, int levels, float beta) {
  const int64_t n = planes.numel() / levels;
  float* p = planes.data<float>();
  with_softmax_levels(levels, [&](auto K) {
    constexpr int k = decltype(K)::value;
    for (int64_t i = 0; i < n; ++i) {
      float logits[k], u[k];
      for (int l = 0; l < k; ++l) logits[l] = p[l * n + i];
      softmax_beta<k>(logits, beta, u);
      for (int l = 0; l < k; ++l) p[l * n + i] = u[l];
    }
  });
}

// Softmax logits whose projection starts near w (see Quantizer's constructor comment), or, for
// E7, their probabilities u = softmax(β ũ). Built on the host once, then moved to w's device.
Tensor softmax_init(const Tensor& w, int levels, float beta, bool probabilities) {
  Tensor host = w.cpu();
  const int64_t n = host.numel();
  Shape shape = host.shape();
  shape.insert(shape.begin(), levels);
  Tensor out = Tensor::empty(shape);
  float sigma2 = 0.f;
  for (int l = 0; l < levels; ++l) sigma2 += softmax_level(levels, l) * softmax_level(levels, l) / levels;
  const float* pw = host.data<float>();
  float* po = out.data<float>();
  with_softmax_levels(levels, [&](auto K) {
    constexpr int k = decltype(K)::value;
    for (int64_t i = 0; i < n; ++i)
      for (int l = 0; l < k; ++l) {
        const float d = pw[i] - softmax_level(k, l);
        po[l * n + i] = -d * d / (2.f * beta * sigma2);
      }
  });
  if (probabilities) logits_to_probabilities(out, levels, beta);
  return out.to(w.device());
}

// Ternary softmax logits as the paper's code draws them (md-bnn: init_weights in
// methods/softmax_projn.py on the SConv2d/SLinear layers of models/SimplexLayers.py): every
// ũ_λ is its own Xavier-uniform draw for the layer widened K times (K·out outputs), bound
// a = sqrt(6 / (fan_in + K·fan_out)); a bias (1-D) is drawn N(0, 0.1²) per level. ũ does not
// depend on w, and it is small (|β ũ| ≪ 1): u starts near uniform, so the first rounded
// network is a uniform draw from {−1, 0, 1} (a third zeros) and a few hundred Adam steps of
// size η on ũ (E6) move the argmax. E7 stores u = softmax(β ũ). The draw is seeded per
// parameter (cfg seed, parameter index), so data-parallel ranks start equal.
Tensor softmax_ternary_init(const nn::ParamRef& ref, uint64_t seed, float beta, bool probabilities) {
  constexpr int k = 3;
  const Tensor& w = ref.var.value();
  Shape shape = w.shape();
  shape.insert(shape.begin(), k);
  Tensor out;
  if (ref.kind == nn::ParamKind::Bias || w.ndim() == 1) {
    out = Tensor::normal(shape, 0.f, 0.1f, seed);
  } else {
    const double fan = static_cast<double>(ref.fan_in) + static_cast<double>(k) * static_cast<double>(ref.fan_out);
    const float a = static_cast<float>(std::sqrt(6.0 / fan));
    out = Tensor::uniform(shape, -a, a, seed);
  }
  if (probabilities) logits_to_probabilities(out, k, beta);
  return out.to(w.device());
}

// Where a ternary tanh-family parameter starts (levels 3, E2): w scaled by 0.5/Δ with Δ = 0.7·mean|w|,
// the threshold of a ternary weight network, so that |w| < Δ starts nearest 0 and the rest
// nearest ±1 (about 40% zeros for a Gaussian layer). Unscaled Xavier weights (|w| ≪ 0.5) all
// start nearest 0: the rounded network is constant, and as β grows the projected network
// follows it, a fixed point. A parameter of zeros stays zeros. (Ternary softmax parameters
// start from softmax_ternary_init instead.)
Tensor ternary_start(const Tensor& w) {
  const std::vector<float> v = w.to_vector();
  double sum = 0;
  for (float x : v) sum += std::fabs(x);
  const double mean_abs = v.empty() ? 0 : sum / static_cast<double>(v.size());
  if (mean_abs == 0) return w;
  return ops::scale(w, static_cast<float>(0.5 / (0.7 * mean_abs)));
}

std::string hex(float f) {
  std::ostringstream s;
  s << std::hexfloat << f;
  return s.str();
}

}  // namespace

float Quantizer::beta_at(const QuantConfig& cfg, int64_t iteration) {
  const double b = static_cast<double>(cfg.beta0) *
                   std::pow(static_cast<double>(cfg.rho), static_cast<double>(iteration / cfg.interval + 1));
  return static_cast<float>(std::fmin(b, static_cast<double>(cfg.beta_cap)));
}

Quantizer::Quantizer(std::vector<nn::ParamRef> params, QuantConfig cfg,
                     std::function<bool(const nn::ParamRef&)> keep_float)
    : cfg_(std::move(cfg)), dir_(parse_direction(cfg_.direction, cfg_.momentum)) {
  const Method method = parse_method(cfg_.method, cfg_.levels);
  MDQ_CHECK(cfg_.beta0 > 0.f && cfg_.rho > 0.f && cfg_.interval > 0 && cfg_.beta_cap >= cfg_.beta0 &&
                std::isfinite(cfg_.beta_cap),
            "Quantizer: need beta0 > 0, rho > 0, interval > 0 and a finite beta_cap >= beta0 (got beta0 "
                << cfg_.beta0 << ", rho " << cfg_.rho << ", interval " << cfg_.interval << ", beta_cap "
                << cfg_.beta_cap << ")");
  // E8's hyper-parameters (PyTorch's ranges): outside them Adam's moments or the momentum buffer diverge.
  MDQ_CHECK(cfg_.adam_beta1 >= 0 && cfg_.adam_beta1 < 1 && cfg_.adam_beta2 >= 0 && cfg_.adam_beta2 < 1,
            "Quantizer: Adam betas must lie in [0, 1), got beta1 " << cfg_.adam_beta1 << ", beta2 " << cfg_.adam_beta2);
  MDQ_CHECK(cfg_.e7_arithmetic == "exact" || cfg_.e7_arithmetic == "mdbnn",
            "Quantizer: e7_arithmetic '" << cfg_.e7_arithmetic << "' is neither exact nor mdbnn");
  MDQ_CHECK(cfg_.adam_eps >= 0 && cfg_.momentum >= 0 && cfg_.weight_decay >= 0,
            "Quantizer: adam_eps (" << cfg_.adam_eps << "), momentum (" << cfg_.momentum << ") and weight_decay ("
                                    << cfg_.weight_decay << ") must be >= 0");
  beta_ = beta_at(cfg_, 0);
  for (size_t i = 0; i < params.size(); ++i) {
    MDQ_CHECK(params[i].var.defined(), "Quantizer: parameter " << i << " ('" << params[i].name << "') is undefined");
    for (size_t j = 0; j < i; ++j)
      MDQ_CHECK(!params[i].var.same_as(params[j].var),
                "Quantizer: parameter '" << params[i].name << "' is listed twice (also as '" << params[j].name
                                         << "'); it would be stepped twice");
  }
  MDQ_CHECK(cfg_.ternary_start == "scaled" || cfg_.ternary_start == "classifier-xavier",
            "Quantizer: ternary_start '" << cfg_.ternary_start << "' is not one of scaled, classifier-xavier");
  const std::string logits_layer = params.empty() ? std::string() : nn::module_of(params.back().name);
  for (nn::ParamRef& ref : params) {
    QuantParam p;
    p.ref = ref;
    p.method = keep_float && keep_float(ref) ? parse_method("float", 2) : method;
    Tensor& w = p.ref.var.value();
    check_dtype("Quantizer", w, DType::F32);
    const bool softmax_ternary = p.method.levels == 3 && is_softmax_rule(p.method.rule);
    const bool scaled = cfg_.ternary_start == "scaled" || nn::module_of(ref.name) != logits_layer;
    const Tensor w0 =
        p.method.levels == 3 && p.method.rule != Rule::Float && !softmax_ternary && scaled ? ternary_start(w) : w;
    const uint64_t seed = splitmix64(cfg_.seed * 0x9E3779B97F4A7C15ull + 0x7465726eull + params_.size());
    switch (p.method.rule) {
      case Rule::MdTanh: p.stored = tanh_project(w0, beta_, p.method.levels); break;
      case Rule::Pmf:
      case Rule::MdSoftmaxS:
        p.stored = softmax_ternary ? softmax_ternary_init(p.ref, seed, beta_, false)
                                   : softmax_init(w0, p.method.levels, beta_, false);
        break;
      case Rule::MdSoftmax:
        p.stored = softmax_ternary ? softmax_ternary_init(p.ref, seed, beta_, /*probabilities=*/true)
                                   : softmax_init(w0, p.method.levels, beta_, /*probabilities=*/true);
        break;
      default: p.stored = w0.clone(); break;
    }
    if (uses_m(dir_)) p.m = Tensor::zeros(p.stored.shape(), DType::F32, p.stored.device());
    if (uses_v(dir_)) p.v = Tensor::zeros(p.stored.shape(), DType::F32, p.stored.device());
    primal_from_stored(p.method, p.stored, beta_, w);
    params_.push_back(std::move(p));
  }
}

void Quantizer::step(float lr) {
  MDQ_CHECK(!rounded_applied_, "Quantizer::step: rounded weights are applied; call restore_primal() (or end the "
                               "RoundedScope) before training");
  const float beta_next = beta_at(cfg_, iteration_ + 1);
  for (Group& g : groups_) {
    g.tensors.clear();
    g.members.clear();
  }
  for (QuantParam& p : params_) {
    Var& var = p.ref.var;
    if (!var.has_grad()) {
      if (beta_next != beta_ && p.method.projects_with_beta())
        primal_from_stored(p.method, p.stored, beta_next, var.value());
      continue;
    }
    MDQ_CHECK(var.grad().shape() == var.value().shape() && var.grad().device() == var.value().device(),
              "Quantizer::step: grad " << var.grad().describe() << " of " << p.ref.name << " does not match its value "
                                       << var.value().describe());
    ++p.steps;
    const Device device = var.value().device();
    // The step count grows every step: a group still empty this step takes the parameter's.
    auto g = std::find_if(groups_.begin(), groups_.end(), [&](const Group& g) {
      return g.method.rule == p.method.rule && g.method.levels == p.method.levels && g.device == device &&
             (g.tensors.empty() || g.steps == p.steps);
    });
    if (g == groups_.end()) g = groups_.insert(groups_.end(), Group{p.method, device, p.steps, {}, {}});
    g->steps = p.steps;
    g->tensors.push_back({&p.stored, &var.grad(), &p.m, &p.v, &var.value()});
    g->members.push_back(static_cast<size_t>(&p - params_.data()));
  }
  for (const Group& g : groups_)
    if (!g.tensors.empty()) multi_.step(g.method, dir_, step_args(lr, beta_next, g.steps), g.tensors);
  ++iteration_;
  beta_ = beta_next;
}

StepArgs Quantizer::step_args(float lr, float beta_next, int64_t steps) const {
  StepArgs a;
  a.lr = lr;
  a.beta = beta_;
  a.beta_next = beta_next;
  a.adam_beta1 = cfg_.adam_beta1;
  a.adam_beta2 = cfg_.adam_beta2;
  a.adam_eps = cfg_.adam_eps;
  a.inv_bias1 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(cfg_.adam_beta1), static_cast<double>(steps))));
  a.inv_bias2 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(cfg_.adam_beta2), static_cast<double>(steps))));
  a.momentum = cfg_.momentum;
  a.weight_decay = cfg_.weight_decay;
  a.e7_mdbnn = cfg_.e7_arithmetic == "mdbnn";
  return a;
}

bool Quantizer::last_step_took_all() const {
  size_t stepped = 0;
  for (const Group& g : groups_) stepped += g.members.size();
  return stepped == params_.size();
}

void Quantizer::step_replayed(float lr, CudaGraph& graph) {
  MDQ_CHECK(!rounded_applied_, "Quantizer::step_replayed: rounded weights are applied; call restore_primal() first");
  const float beta_next = beta_at(cfg_, iteration_ + 1);
  int launch = 0;
  for (Group& g : groups_) {
    if (g.members.empty()) continue;
    for (size_t i : g.members) ++params_[i].steps;
    ++g.steps;
    const StepArgs a = step_args(lr, beta_next, g.steps);
    for (int k = 0; k < MultiStep::gpu_launches(g.members.size()); ++k) graph.set_step_args(launch++, a);  // group order
  }
  MDQ_CHECK(launch == graph.step_args_count(),
            "Quantizer::step_replayed: the graph holds " << graph.step_args_count() << " MD update launches, the last "
                                                         << "step made " << launch);
  ++iteration_;
  beta_ = beta_next;
}

void Quantizer::zero_grad() {
  for (QuantParam& p : params_) p.ref.var.zero_grad();
}

void Quantizer::apply_rounded() {
  MDQ_CHECK(!rounded_applied_, "Quantizer::apply_rounded: rounded weights are already applied");
  for (QuantParam& p : params_) {
    Tensor& x = p.ref.var.value();
    p.saved_primal = x.clone();
    x.copy_from(rounded_from(p.method, p.stored, p.saved_primal));
  }
  rounded_applied_ = true;
}

void Quantizer::restore_primal() {
  MDQ_CHECK(rounded_applied_, "Quantizer::restore_primal: rounded weights are not applied");
  for (QuantParam& p : params_) {
    p.ref.var.value().copy_from(p.saved_primal);
    p.saved_primal = Tensor();
  }
  rounded_applied_ = false;
}

std::vector<std::pair<std::string, Tensor>> Quantizer::rounded_weights() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const QuantParam& p : params_) {
    const Tensor& x = rounded_applied_ ? p.saved_primal : p.ref.var.value();
    out.emplace_back(p.ref.name, rounded_from(p.method, p.stored, x));
  }
  return out;
}

std::vector<std::pair<std::string, Tensor*>> Quantizer::state() {
  std::vector<std::pair<std::string, Tensor*>> out;
  for (QuantParam& p : params_) {
    out.emplace_back("quant." + p.ref.name + ".stored", &p.stored);
    if (p.m.defined()) out.emplace_back("quant." + p.ref.name + ".m", &p.m);
    if (p.v.defined()) out.emplace_back("quant." + p.ref.name + ".v", &p.v);
  }
  return out;
}

// Plain text, one record a line; floats in hex so they round-trip exactly.
std::string Quantizer::state_metadata() const {
  std::ostringstream s;
  s << "mdq-quantizer 1\n"
    << "iteration " << iteration_ << "\n"
    << "beta " << hex(beta_) << "\n"
    << "direction " << direction_name(dir_) << "\n";
  for (const QuantParam& p : params_)
    s << "param " << p.ref.name << " " << p.method.name() << " " << p.method.levels << " " << p.steps << "\n";
  return s.str();
}

void Quantizer::load_state_metadata(const std::string& text) {
  std::istringstream in(text);
  std::string key, value;
  int version = 0;
  in >> key >> version;
  MDQ_CHECK(in && key == "mdq-quantizer" && version == 1,
            "Quantizer::load_state_metadata: not quantizer metadata version 1 (starts with '" << key << "')");
  int64_t iteration = 0;
  std::string beta_text, dir;
  in >> key >> iteration;
  MDQ_CHECK(in && key == "iteration", "Quantizer::load_state_metadata: expected 'iteration', got '" << key << "'");
  in >> key >> beta_text;
  MDQ_CHECK(in && key == "beta", "Quantizer::load_state_metadata: expected 'beta', got '" << key << "'");
  in >> key >> dir;
  MDQ_CHECK(in && key == "direction" && dir == direction_name(dir_),
            "Quantizer::load_state_metadata: saved direction '" << dir << "', this quantizer uses '"
                                                               << direction_name(dir_) << "'");
  std::vector<int64_t> steps;
  for (const QuantParam& p : params_) {
    std::string name, method;
    int levels = 0;
    int64_t st = 0;
    in >> key >> name >> method >> levels >> st;
    MDQ_CHECK(in && key == "param", "Quantizer::load_state_metadata: missing the record of parameter " << p.ref.name);
    MDQ_CHECK(name == p.ref.name && method == p.method.name() && levels == p.method.levels,
              "Quantizer::load_state_metadata: saved parameter " << name << " (" << method << ", " << levels
                  << " levels) does not match " << p.ref.name << " (" << p.method.name() << ", " << p.method.levels
                  << " levels)");
    steps.push_back(st);
  }
  in >> key;
  MDQ_CHECK(!in, "Quantizer::load_state_metadata: more parameters saved than this model has ('" << key << "')");
  iteration_ = iteration;
  beta_ = std::strtof(beta_text.c_str(), nullptr);
  for (size_t i = 0; i < params_.size(); ++i) params_[i].steps = steps[i];
  refresh_primal();  // the state tensors were loaded first (see quantizer.h)
}

void Quantizer::refresh_primal() {
  MDQ_CHECK(!rounded_applied_, "Quantizer::refresh_primal: rounded weights are applied; restore_primal() first");
  for (QuantParam& p : params_) primal_from_stored(p.method, p.stored, beta_, p.ref.var.value());
}

}  // namespace mdq::quant

// The mirror-descent quantizer (DESIGN.md §1, E6–E11), and mdq's one optimizer: the E8
// direction (Adam, or SGD with momentum) of every method, `float` included, is taken here.
// One QuantParam per model parameter holds the stored variable and the optimizer moments;
// step() updates them from the gradient at the primal weights and writes the new primal x into
// the parameter's Var in place, then anneals β (E10). Any method runs on any layer of any
// model: the method is a run-time name.
//
//   Quantizer q(model.parameters(), cfg);            // after model.to(device)
//   loop: forward, backward(loss); q.step(lr); q.zero_grad();
//   eval: { Quantizer::RoundedScope r(q); evaluate(model); }   // E11 weights, restored after
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "engine/cuda_graph.h"
#include "engine/nn/module.h"
#include "engine/quant/method.h"
#include "engine/quant/update.h"

namespace mdq::quant {

struct QuantConfig {
  std::string method = "md-tanh-s";  // float, bc, gd-tanh, md-tanh-s, md-tanh, pmf, md-softmax-s, md-softmax
  int levels = 2;                    // 2 binary, 3 ternary, 4 (softmax only) {−2, −1, 1, 2}
  std::string direction = "adam";    // E8: "adam" or "sgd" (with momentum)
  float beta0 = 1.f, rho = 1.02f;    // E10: β_k = min(cap, β0 ρ^(⌊k/T⌋+1))
  int64_t interval = 200;            // T
  // 1e5 is 5× the reference recipe's final β (1.02^500 ≈ 2.0e4 after 100k iterations at T = 200)
  // and keeps every product the kernels form finite in fp32: β·x̃ (tanh saturates), β·ũ for
  // |ũ| < 1e33 before the max is subtracted, β·η·d, β(1 − x²) and the PMF β u (q − x) g.
  float beta_cap = 1e5f;
  float adam_beta1 = 0.9f, adam_beta2 = 0.999f, adam_eps = 1e-8f, momentum = 0.f, weight_decay = 0.f;
  uint64_t seed = 0;                 // draws the ternary softmax logits (the only init not taken from w)
  // Ternary tanh-family starts: "scaled" scales every weight tensor (Quantizer's constructor);
  // "classifier-xavier" leaves the logits layer (the module of the last parameter, as
  // --keep-first-last-float takes it) at its Xavier draw: with no BatchNorm after it, the scaled
  // start gives logits large enough that training starts from a loss of ~10 (results/README.md).
  std::string ternary_start = "scaled";
  // E7's arithmetic: "exact" (the log domain: every weight stays movable) or "mdbnn" (md-bnn's
  // f32 products, whose levels are absorbing: kernels/quant_math.h md_tanh_mdbnn).
  std::string e7_arithmetic = "exact";
};

// One parameter's quantizer state.
struct QuantParam {
  nn::ParamRef ref;    // ref.var.value() is the primal x the layer reads
  Method method;
  Tensor stored;       // x̃ (E6, GD-tanh, BC, float), x (E7 tanh), ũ (E6 softmax, PMF), u (E7 softmax);
                       // softmax family: [levels, *shape], planar
  Tensor m, v;         // E8 moments, stored's shape; undefined when the direction needs none
  int64_t steps = 0;   // this parameter's Adam t (it skips steps where it has no grad)
  Tensor saved_primal; // the primal while rounded weights are applied
};

class Quantizer {
 public:
  // Builds one QuantParam per parameter, on the device its value is on. keep_float(p) == true
  // gives p the method "float" with the same direction. The stored variable starts from the
  // parameter's current value w: x̃ = w (E6, E9), x = P_β(w) (E7 tanh), and for softmax
  // ũ_λ = −(w − q_λ)² / (2 β σ²), σ² = mean_λ q_λ², so u is a discrete Gaussian around w whose
  // mean is w to first order (binary: x = tanh(w)); E7 softmax stores u = softmax(β ũ). Ternary
  // softmax parameters (PMF, E6, E7) do not start from w: as in the paper's code, each ũ_λ is a
  // Xavier-uniform draw for the layer widened 3× (bound sqrt(6/(fan_in + 3 fan_out)); biases
  // N(0, 0.1²)), seeded by cfg.seed and the parameter's index, so u starts near uniform. Ternary
  // tanh-family parameters start from w scaled by 0.5/(0.7·mean|w|) (a ternary weight network's
  // threshold lands on the rounding boundary 0.5), so their first rounded network is not all zeros.
  // Afterwards each Var's value holds the primal x. Throws on an unknown method, levels or
  // direction, listing what is supported; on Adam betas outside [0, 1) or a negative eps,
  // momentum or weight decay; and on a parameter listed twice, naming it.
  Quantizer(std::vector<nn::ParamRef> params, QuantConfig cfg,
            std::function<bool(const nn::ParamRef&)> keep_float = nullptr);

  // After backward(): for each parameter with a grad, one fused step (E6–E9 with E8) that
  // writes the new primal into var.value() in place; then the iteration advances and β follows
  // E10. When β changes, E6/GD/PMF primals are re-projected from the stored variable with the
  // new β (x sharpens at once); E7 keeps x. Parameters without a grad are skipped. On the GPU
  // the parameters that share a method and an Adam step count (in a run, all of them, or two
  // groups with keep_float) are stepped by one launch per group (MultiStep).
  void step(float lr);
  void zero_grad();

  // CUDA graphs (engine/train_step.h): `graph` captured a step() (with forward and backward) and
  // replays it. This is that step's host half: it advances the counters and β as step() would and
  // writes this step's StepArgs into the graph's MD update launches; replay the graph after it.
  // Valid while the parameters stepped are those of the captured step: last_step_took_all()
  // (every parameter had a grad) makes that certain.
  void step_replayed(float lr, CudaGraph& graph);
  bool last_step_took_all() const;

  float beta() const { return beta_; }
  int64_t iteration() const { return iteration_; }
  static float beta_at(const QuantConfig& cfg, int64_t iteration);  // E10

  // E11: swap the rounded weights into the Vars (in place, same storage) for evaluation, and
  // back. step() refuses to run while they are applied.
  void apply_rounded();
  void restore_primal();
  bool rounded_applied() const { return rounded_applied_; }
  class RoundedScope {
   public:
    explicit RoundedScope(Quantizer& q) : q_(q) { q_.apply_rounded(); }
    ~RoundedScope() { q_.restore_primal(); }
    RoundedScope(const RoundedScope&) = delete;
    RoundedScope& operator=(const RoundedScope&) = delete;
   private:
    Quantizer& q_;
  };
  // (parameter name, rounded weight) for export: what the layers read under RoundedScope.
  std::vector<std::pair<std::string, Tensor>> rounded_weights() const;

  // Everything needed to resume bit for bit: "quant.<name>.stored", ".m", ".v" tensors (load
  // into them in place, first), then the metadata text (iteration, β, per-parameter method and
  // step count): load_state_metadata checks that names and methods match, restores the counters
  // and rewrites every Var's primal from the loaded stored variable (refresh_primal).
  std::vector<std::pair<std::string, Tensor*>> state();
  std::string state_metadata() const;
  void load_state_metadata(const std::string& text);
  void refresh_primal();  // var.value() = primal from the stored variable at the current β

  const std::vector<QuantParam>& params() const { return params_; }
  const QuantConfig& config() const { return cfg_; }
  Dir direction() const { return dir_; }
  static std::string supported_methods() { return quant::supported_methods(); }

 private:
  QuantConfig cfg_;
  Dir dir_;
  std::vector<QuantParam> params_;
  float beta_;
  int64_t iteration_ = 0;
  bool rounded_applied_ = false;

  // The parameters step() steps together: one method, one device, one Adam step count (so one
  // StepArgs). Kept between steps, with their vectors' capacity, so a step allocates nothing.
  struct Group {
    Method method;
    Device device = Device::CPU;
    int64_t steps = 0;
    std::vector<StepTensors> tensors;
    std::vector<size_t> members;  // their indices in params_
  };
  StepArgs step_args(float lr, float beta_next, int64_t steps) const;  // E8-E10 scalars of one group
  std::vector<Group> groups_;
  MultiStep multi_;
};

}  // namespace mdq::quant

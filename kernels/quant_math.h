// Per-element math of the mirror-descent quantizer (DESIGN.md §1, E1–E11), written once as
// __host__ __device__ inline functions: the CPU reference (engine/quant/) and the CUDA kernels
// (kernels/quant_*.cu) both call these, so the two backends cannot drift apart.
//
// Layouts: a tanh-family parameter of n weights stores one float per weight (x̃, or x for E7);
// a softmax-family parameter stores K planes of n floats ("planar", plane λ at offset λ·n), so
// every plane is read and written coalesced and, when n % 4 == 0, as float4.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/host_device.h"

namespace mdq::quant {

// The update rule of a method (DESIGN.md E6, E7, E9); with a number of levels it picks the
// projection too: tanh family (E1, E2) or softmax family (E3).
enum class Rule : int {
  Float,          // E9 float reference: x = x̃, no projection
  BinaryConnect,  // E9 BC/STE: x = nearest level of x̃ (sign for binary), ∂L/∂x̃ = g·1[|x̃| ≤ 1]
  GdTanh,         // E9 GD-tanh: x = P_β(x̃), ∂L/∂x̃ = P'_β(x̃) g (true chain rule)
  MdTanhS,        // E6 MD-tanh-S: x̃ ← x̃ − η d(g), x = P_β(x̃)
  MdTanh,         // E7 MD-tanh (primal): x ← tanh(atanh(x) − β η d(g)), binary only
  Pmf,            // E9 PMF: ∂L/∂ũ = β (diag(u) − u uᵀ) ∂L/∂u
  MdSoftmaxS,     // E6 MD-softmax-S: ũ ← ũ − η d(q g), x = Σ q softmax(βũ)
  MdSoftmax,      // E7 MD-softmax (primal): exponentiated gradient on u
};

// E8 direction: plain SGD, SGD with a momentum buffer (PyTorch's, dampening 0), or Adam.
enum class Dir : int { Sgd, Momentum, Adam };

MDQ_HD constexpr bool is_softmax_rule(Rule r) { return r == Rule::Pmf || r == Rule::MdSoftmaxS || r == Rule::MdSoftmax; }
MDQ_HD constexpr bool uses_m(Dir d) { return d != Dir::Sgd; }
MDQ_HD constexpr bool uses_v(Dir d) { return d == Dir::Adam; }

// Everything one step needs besides the arrays; built on the host once per parameter per step.
struct StepArgs {
  float lr = 0.f;            // η
  float beta = 1.f;          // β of this step: the one that produced the current x (E6 lifting, E7, GD, PMF)
  float beta_next = 1.f;     // β after this step's E10 update: the new x = P_{β_next}(x̃) (E6 re-projects)
  float adam_beta1 = 0.9f, adam_beta2 = 0.999f, adam_eps = 1e-8f;
  float inv_bias1 = 1.f, inv_bias2 = 1.f;  // 1/(1 − b1^t), 1/(1 − b2^t), t the parameter's step count (PyTorch Adam)
  float momentum = 0.f;
  float weight_decay = 0.f;  // L2 on the primal weight: g += wd·x (a term of the loss, so every rule sees it)
  int e7_mdbnn = 0;          // 1: E7 in md-bnn's f32 products (md_tanh_mdbnn, md_softmax_mdbnn), not the log domain
};

// ---------------------------------------------------------------- levels

// Softmax levels Q (E3): binary {−1, 1}, ternary {−1, 0, 1}, 2-bit {−2, −1, 1, 2}.
MDQ_HD float softmax_level(int K, int l) {
  if (K == 2) return l == 0 ? -1.f : 1.f;
  if (K == 3) return static_cast<float>(l - 1);
  return static_cast<float>(l < 2 ? l - 2 : l - 1);  // K == 4
}
// K uniform tanh levels in [−1, 1] (E2): q_j = −1 + 2j/(K−1); b_i = −1 + (2i−1)/(K−1) the
// midpoints between neighbours (exact in float for K = 2, 3).
MDQ_HD float tanh_level(int K, int j) { return -1.f + 2.f * static_cast<float>(j) / static_cast<float>(K - 1); }
MDQ_HD float tanh_midpoint(int K, int i) {
  return -1.f + static_cast<float>(2 * i - 1) / static_cast<float>(K - 1);
}

// ---------------------------------------------------------------- E1, E2: tanh projection

template <int K>
MDQ_HD float tanh_project(float dual, float beta) {
  if constexpr (K == 2) {
    return tanhf(beta * dual);
  } else {
    float x = 0.f;
MDQ_UNROLL
    for (int i = 1; i < K; ++i) x += tanhf(beta * (dual - tanh_midpoint(K, i)));
    return x * (1.f / static_cast<float>(K - 1));
  }
}
// dP_β/dx̃ (the GD-tanh Jacobian, E9): β/(K−1) Σ (1 − tanh²(β(x̃ − b_i))); binary β(1 − x²).
template <int K>
MDQ_HD float tanh_project_grad(float dual, float beta) {
  float d = 0.f;
MDQ_UNROLL
  for (int i = 1; i < K; ++i) {
    float t = tanhf(beta * (dual - tanh_midpoint(K, i)));
    d += 1.f - t * t;
  }
  return beta * d * (1.f / static_cast<float>(K - 1));
}

// E4: ∇Φ_β(x) = atanh(x)/β, the inverse of E1. |x| is held below 1 by one ulp so a weight that
// rounded to ±1 in float maps to a finite dual (|atanh| ≤ 8.67) and can still move back.
MDQ_HD float clamp_unit(float x) {
  const float lim = 0.99999994f;  // largest float below 1
  return fminf(fmaxf(x, -lim), lim);
}
MDQ_HD float tanh_mirror_grad(float x, float beta) { return atanhf(clamp_unit(x)) / beta; }

// E11 for the tanh family and BC: nearest of the K uniform levels, by exact comparison with the
// midpoints (no arithmetic on x, so sign(x) is exact for binary); ties go to the upper level,
// so binary maps 0 to +1.
template <int K>
MDQ_HD float nearest_level(float x) {
  float q = -1.f;
MDQ_UNROLL
  for (int i = 1; i < K; ++i)
    if (x >= tanh_midpoint(K, i)) q = tanh_level(K, i);
  return q;
}

// ---------------------------------------------------------------- E3, E5: softmax projection

// u = softmax(β ũ) with the max subtracted first, so no exponent is positive.
template <int K>
MDQ_HD void softmax_beta(const float (&logits)[K], float beta, float (&u)[K]) {
  float mx = beta * logits[0];
MDQ_UNROLL
  for (int l = 1; l < K; ++l) mx = fmaxf(mx, beta * logits[l]);
  float sum = 0.f;
MDQ_UNROLL
  for (int l = 0; l < K; ++l) {
    u[l] = expf(beta * logits[l] - mx);
    sum += u[l];
  }
  const float inv = 1.f / sum;
MDQ_UNROLL
  for (int l = 0; l < K; ++l) u[l] *= inv;
}
template <int K>
MDQ_HD float softmax_mean(const float (&u)[K]) {
  float x = 0.f;
MDQ_UNROLL
  for (int l = 0; l < K; ++l) x += softmax_level(K, l) * u[l];
  return x;
}
// E11 for softmax: q_{argmax}; the first maximum wins a tie. Works on ũ or u (same argmax).
template <int K>
MDQ_HD float softmax_round(const float (&s)[K]) {
  int best = 0;
MDQ_UNROLL
  for (int l = 1; l < K; ++l)
    if (s[l] > s[best]) best = l;
  return softmax_level(K, best);
}
// Smallest probability E7 takes a log of: an underflowed u_λ stays finite in the log domain
// (−85) and can grow again, as it could under E6.
constexpr float kMinProb = 1e-37f;

// E7 as md-bnn (the paper's code, optimizers/MDAadam.py and utils/simplex_utils.py) computes it:
// products in f32 instead of the log domain, with its 1e-20 guards. Its levels are absorbing: a
// weight that rounds to x = −1 has e = 0 and never moves again; at x = +1, e ≈ 2e20 and only a
// step β·η·d > 14.8 brings it under 1; a probability that underflows to 0 stays 0. (The log-domain
// form keeps every weight movable.) t = β·η·d. Where md-bnn would make a NaN (e overflows, or
// 0·inf at x = −1), the weight takes the level it was heading for, or stays at −1.
MDQ_HD float md_tanh_mdbnn(float x, float t) {
  const float e = (1.f + x) / ((1.f - x) + 1e-20f) * expf(-2.f * t);
  if (!(e <= 3.4e38f)) return x <= -1.f ? -1.f : 1.f;
  return (e - 1.f) / ((e + 1.f) + 1e-20f);
}
template <int K>
MDQ_HD void md_softmax_mdbnn(float (&u)[K], const float (&t)[K]) {
  float zmax = -t[0];
MDQ_UNROLL
  for (int l = 1; l < K; ++l) zmax = fmaxf(zmax, -t[l]);
  float sum = 0.f;
MDQ_UNROLL
  for (int l = 0; l < K; ++l) {
    u[l] *= expf(-t[l] - zmax) + 1e-20f;
    sum += u[l];
  }
MDQ_UNROLL
  for (int l = 0; l < K; ++l) u[l] /= sum;
}

// ---------------------------------------------------------------- E8: directions

template <Dir D>
MDQ_HD float direction(float g, float& m, float& v, const StepArgs& a) {
  if constexpr (D == Dir::Sgd) {
    return g;
  } else if constexpr (D == Dir::Momentum) {
    m = a.momentum * m + g;  // PyTorch SGD, dampening 0 (its first step buf = g is this with m = 0)
    return m;
  } else {
    m = a.adam_beta1 * m + (1.f - a.adam_beta1) * g;
    v = a.adam_beta2 * v + (1.f - a.adam_beta2) * g * g;
    // Reciprocals from the host: two multiplies instead of two IEEE divides per element.
    return (m * a.inv_bias1) / (sqrtf(v * a.inv_bias2) + a.adam_eps);
  }
}

// ---------------------------------------------------------------- one weight, one step

// The primal weight a tanh-family rule reads from its stored variable.
template <Rule R, int K>
MDQ_HD float tanh_primal(float stored, float beta) {
  if constexpr (R == Rule::Float || R == Rule::MdTanh) return stored;  // E7 stores x itself
  else if constexpr (R == Rule::BinaryConnect) return nearest_level<K>(stored);
  else return tanh_project<K>(stored, beta);
}

// Tanh family: reads the stored s, the gradient g = ∂L/∂x and the moments; writes s, the
// moments and the new primal x. E6/E9: s ← s − η d, x = P_{β_next}(s). E7: log-domain form of
// x ← (e−1)/(e+1), e = (1+x)/(1−x)·exp(−2βηd), which is tanh(atanh(x) − βηd): never overflows.
template <Rule R, Dir D, int K>
MDQ_HD void tanh_step(float& s, float g, float& m, float& v, float& x, const StepArgs& a) {
  if (a.weight_decay != 0.f) g += a.weight_decay * tanh_primal<R, K>(s, a.beta);
  float gs = g;  // gradient that moves the stored variable
  if constexpr (R == Rule::GdTanh) gs = tanh_project_grad<K>(s, a.beta) * g;
  if constexpr (R == Rule::BinaryConnect) gs = fabsf(s) <= 1.f ? g : 0.f;
  const float d = direction<D>(gs, m, v, a);
  if constexpr (R == Rule::MdTanh) {
    s = a.e7_mdbnn ? md_tanh_mdbnn(s, a.beta * a.lr * d) : tanhf(atanhf(clamp_unit(s)) - a.beta * a.lr * d);
    x = s;
  } else {
    s -= a.lr * d;
    x = tanh_primal<R, K>(s, a.beta_next);
  }
}

// Softmax family, one weight with K logits (or, for E7, K probabilities). ∂L/∂u_λ = q_λ g (E6,
// E7); PMF multiplies by the softmax Jacobian: β u_λ (q_λ − x) g. E7 is exponentiated gradient
// in the log domain with the max subtracted.
template <Rule R, Dir D, int K>
MDQ_HD void softmax_step(float (&s)[K], float g, float (&m)[K], float (&v)[K], float& x, const StepArgs& a) {
  float u[K] = {};
  float x_now = 0.f;
  const bool need_u = R == Rule::Pmf || R == Rule::MdSoftmax || a.weight_decay != 0.f;
  if (need_u) {
    if constexpr (R == Rule::MdSoftmax) {
MDQ_UNROLL
      for (int l = 0; l < K; ++l) u[l] = s[l];
    } else {
      softmax_beta<K>(s, a.beta, u);
    }
    x_now = softmax_mean<K>(u);
  }
  if (a.weight_decay != 0.f) g += a.weight_decay * x_now;
  float d[K];
MDQ_UNROLL
  for (int l = 0; l < K; ++l) {
    const float q = softmax_level(K, l);
    const float gs = R == Rule::Pmf ? a.beta * u[l] * (q - x_now) * g : q * g;
    d[l] = direction<D>(gs, m[l], v[l], a);
  }
  if constexpr (R == Rule::MdSoftmax) {
    if (a.e7_mdbnn) {
      float t[K];
MDQ_UNROLL
      for (int l = 0; l < K; ++l) t[l] = a.beta * a.lr * d[l];
      md_softmax_mdbnn<K>(u, t);
    } else {
      float z[K];
MDQ_UNROLL
      for (int l = 0; l < K; ++l) z[l] = logf(fmaxf(u[l], kMinProb)) - a.beta * a.lr * d[l];
      softmax_beta<K>(z, 1.f, u);
    }
MDQ_UNROLL
    for (int l = 0; l < K; ++l) s[l] = u[l];
  } else {
MDQ_UNROLL
    for (int l = 0; l < K; ++l) s[l] -= a.lr * d[l];
    softmax_beta<K>(s, a.beta_next, u);
  }
  x = softmax_mean<K>(u);
}

// Backward of E3 (the PMF Jacobian, E9): ∂L/∂ũ_λ = β u_λ (q_λ − x) ∂L/∂x, since ∂L/∂u_λ = q_λ ∂L/∂x.
template <int K>
MDQ_HD void softmax_project_backward(const float (&logits)[K], float g, float beta, float (&glogits)[K]) {
  float u[K];
  softmax_beta<K>(logits, beta, u);
  const float x = softmax_mean<K>(u);
MDQ_UNROLL
  for (int l = 0; l < K; ++l) glogits[l] = beta * u[l] * (softmax_level(K, l) - x) * g;
}

// The primal x of a softmax-family weight from its stored variable (ũ, or u for E7).
template <Rule R, int K>
MDQ_HD float softmax_primal(const float (&s)[K], float beta) {
  if constexpr (R == Rule::MdSoftmax) {
    return softmax_mean<K>(s);
  } else {
    float u[K];
    softmax_beta<K>(s, beta, u);
    return softmax_mean<K>(u);
  }
}

// ---------------------------------------------------------------- compile-time dispatch

template <class T, T V> using Const = std::integral_constant<T, V>;

// Calls f(Const<int, K>{}) for a softmax level count K = levels in {2, 3, 4} (callers validate;
// anything else runs as 4). Host code: the CPU references and the quantizer's initialisation.
template <class F>
inline void with_softmax_levels(int levels, F&& f) {
  if (levels == 2) f(Const<int, 2>{});
  else if (levels == 3) f(Const<int, 3>{});
  else f(Const<int, 4>{});
}

// Calls f(Const<Rule>, Const<Dir>, Const<int K>) for the runtime (rule, dir, K), instantiating
// only the supported pairs: tanh rules K ∈ {2, 3} (E7 tanh: 2), softmax rules K ∈ {2, 3, 4},
// float K = 2 (levels do not matter). Callers validate first (engine/quant/method.h); an
// unsupported combination here returns false.
template <class F>
inline bool dispatch_step(Rule rule, Dir dir, int K, F&& f) {
  bool ok = true;
  auto with_k = [&](auto R, auto D) {
    constexpr Rule r = decltype(R)::value;
    if constexpr (r == Rule::Float) {
      f(R, D, Const<int, 2>{});
    } else if constexpr (r == Rule::MdTanh) {
      if (K == 2) f(R, D, Const<int, 2>{}); else ok = false;
    } else {
      if (K == 2) f(R, D, Const<int, 2>{});
      else if (K == 3) f(R, D, Const<int, 3>{});
      else if (is_softmax_rule(r) && K == 4) {
        if constexpr (r == Rule::Pmf || r == Rule::MdSoftmaxS || r == Rule::MdSoftmax) f(R, D, Const<int, 4>{});
      } else ok = false;
    }
  };
  auto with_d = [&](auto R) {
    switch (dir) {
      case Dir::Sgd: with_k(R, Const<Dir, Dir::Sgd>{}); break;
      case Dir::Momentum: with_k(R, Const<Dir, Dir::Momentum>{}); break;
      case Dir::Adam: with_k(R, Const<Dir, Dir::Adam>{}); break;
    }
  };
  switch (rule) {
    case Rule::Float: with_d(Const<Rule, Rule::Float>{}); break;
    case Rule::BinaryConnect: with_d(Const<Rule, Rule::BinaryConnect>{}); break;
    case Rule::GdTanh: with_d(Const<Rule, Rule::GdTanh>{}); break;
    case Rule::MdTanhS: with_d(Const<Rule, Rule::MdTanhS>{}); break;
    case Rule::MdTanh: with_d(Const<Rule, Rule::MdTanh>{}); break;
    case Rule::Pmf: with_d(Const<Rule, Rule::Pmf>{}); break;
    case Rule::MdSoftmaxS: with_d(Const<Rule, Rule::MdSoftmaxS>{}); break;
    case Rule::MdSoftmax: with_d(Const<Rule, Rule::MdSoftmax>{}); break;
  }
  return ok;
}

}  // namespace mdq::quant

// Quantizer kernels on the GPU against the CPU reference: the fused step for every method,
// level count and direction (float4 and scalar paths, saturated inputs at the β cap, poisoned
// outputs), the multi-tensor step against the per-tensor one (bit for bit), the projection
// forward/backward/rounding kernels, and the Quantizer end to end.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "engine/ops/elementwise.h"
#include "engine/quant/projection.h"
#include "engine/quant/quantizer.h"
#include "engine/quant/update.h"
#include "engine/storage.h"
#ifdef MDQ_HAS_CUDA
#include "kernels/quant_update.h"
#endif
#include "tests/support/testing.h"

using namespace mdq;
using namespace mdq::quant;

namespace {

const char* kMethods[] = {"float", "bc", "gd-tanh", "md-tanh-s", "md-tanh", "pmf", "md-softmax-s", "md-softmax"};
const float kCap = QuantConfig{}.beta_cap;

bool supported(const char* name, int K, Method& m) {
  try {
    m = parse_method(name, K);
    return m.rule != Rule::Float || K == 2;  // float ignores levels: test it once
  } catch (const Error&) {
    return false;
  }
}

// A valid stored variable for the method: x̃/ũ in the given range, x = tanh(·) for E7 tanh, a
// probability vector for E7 softmax. saturated: |β s| ≥ 20 with one clear winner per weight.
Tensor make_stored(const Method& m, int64_t n, bool saturated, uint64_t seed) {
  const int K = m.planes();
  Shape shape = m.is_softmax() ? Shape{K, n} : Shape{n};
  Tensor s = testing::random_tensor(shape, seed, -1.5f, 1.5f);
  float* p = s.data<float>();
  if (saturated) {
    for (int64_t i = 0; i < s.numel(); ++i) p[i] = p[i] < 0 ? p[i] * 20 - 20 : p[i] * 20 + 20;  // |s| in [20, 50)
    if (m.is_softmax())  // weight i's winner is plane i % K, 30 above every other logit
      for (int64_t i = 0; i < n; ++i) p[(i % K) * n + i] = std::fabs(p[(i % K) * n + i]) + 80.f;
  }
  if (m.rule == Rule::MdTanh)
    for (int64_t i = 0; i < n; ++i) p[i] = saturated ? (i % 3 == 0 ? (p[i] < 0 ? -1.f : 1.f) : std::tanh(p[i])) : std::tanh(2.f * p[i]);
  if (m.rule == Rule::MdSoftmax) {
    for (int64_t i = 0; i < n; ++i) {
      float sum = 0;
      for (int l = 0; l < K; ++l) sum += (p[l * n + i] = saturated ? (l == i % K ? 1.f : (i % 2 ? 0.f : 1e-30f)) : std::exp(p[l * n + i]));
      for (int l = 0; l < K; ++l) p[l * n + i] /= sum;
    }
  }
  return s;
}

// Both run the same device functions per weight (kernels/quant_update.cu) with the same StepArgs,
// so the multi-tensor step must reproduce the per-tensor one exactly: compare the bits.
void require_same_bits(const Tensor& actual, const Tensor& expected, const std::string& what) {
  const std::vector<float> a = actual.to_vector(), e = expected.to_vector();
  REQUIRE(a.size() == e.size());
  for (size_t i = 0; i < a.size(); ++i) {
    uint32_t ba, be;
    std::memcpy(&ba, &a[i], 4);
    std::memcpy(&be, &e[i], 4);
    if (ba != be) {
      INFO(what << ": element " << i << " is " << a[i] << ", expected " << e[i]);
      REQUIRE(ba == be);
    }
  }
}

}  // namespace

TEST_CASE("fused step kernels match the CPU reference for every method, levels, direction and size") {
  for (const char* name : kMethods)
    for (int K : {2, 3, 4}) {
      Method m;
      if (!supported(name, K, m)) continue;
      for (Dir dir : {Dir::Sgd, Dir::Momentum, Dir::Adam})
        for (int64_t n : {1, 7, 1000, 4096, 65537})
          for (bool saturated : {false, true}) {
            const uint64_t seed = 1000 * K + n + (saturated ? 7 : 0);
            Tensor s = make_stored(m, n, saturated, seed);
            Tensor g = testing::random_tensor({n}, seed + 1, saturated ? -100.f : -1.f, saturated ? 100.f : 1.f);
            Tensor mm = uses_m(dir) ? testing::random_tensor(s.shape(), seed + 2, -0.1f, 0.1f) : Tensor();
            Tensor vv = uses_v(dir) ? testing::random_tensor(s.shape(), seed + 3, 1e-4f, 1e-2f) : Tensor();
            Tensor gs = s.cuda(), gg = g.cuda(), gm = mm.defined() ? mm.cuda() : Tensor(),
                   gv = vv.defined() ? vv.cuda() : Tensor();
            Tensor x = Tensor::empty({n}), gx = Tensor::empty({n}, DType::F32, Device::CUDA);
            testing::poison(gx);
            StepArgs a;
            a.lr = 1e-2f;
            a.beta = saturated ? kCap : 2.f;
            a.beta_next = saturated ? kCap : 2.2f;  // a β change: E6 re-projects in the same pass
            a.momentum = 0.9f;
            a.weight_decay = n == 7 ? 1e-2f : 0.f;
            for (int t = 1; t <= 3; ++t) {
              a.inv_bias1 = 1.f / (1.f - std::pow(0.9f, float(t)));
              a.inv_bias2 = 1.f / (1.f - std::pow(0.999f, float(t)));
              step_tensors(m, dir, a, s, g, mm, vv, x);
              step_tensors(m, dir, a, gs, gg, gm, gv, gx);
            }
            // Saturated: β·η·d ~ 1e3, so one ulp of an exponent (fma on the GPU, not on the CPU) is ~1e-4.
            const float tol = saturated ? 3e-4f : 2e-5f;
            std::string what = m.name() + " levels " + std::to_string(K) + " " + direction_name(dir) + " n " +
                               std::to_string(n) + (saturated ? " saturated at the cap" : "");
            INFO(what);
            testing::require_close(gs, s, tol, tol, what + ": stored");
            if (mm.defined()) testing::require_close(gm, mm, tol, tol, what + ": m");
            if (vv.defined()) testing::require_close(gv, vv, tol, tol, what + ": v");
            for (float f : gx.to_vector()) REQUIRE(std::isfinite(f));
            // BC's x is a level: a stored value within an ulp of a midpoint may round either
            // way, so check the GPU's x against its own stored variable instead.
            if (m.rule == Rule::BinaryConnect) testing::require_close(gx, tanh_round(gs.cpu(), K), 0, 0, what + ": x");
            else testing::require_close(gx, x, tol, tol, what + ": x");
          }
    }
}

TEST_CASE("E7 in md-bnn's arithmetic (--e7-arithmetic mdbnn): the fused kernel matches the CPU reference") {
  for (const char* name : {"md-tanh", "md-softmax"})
    for (int K : {2, 3, 4}) {
      Method m;
      if (!supported(name, K, m)) continue;
      for (int64_t n : {7, 65537})
        for (bool saturated : {false, true}) {
          const uint64_t seed = 77 * K + n + (saturated ? 5 : 0);
          Tensor s = make_stored(m, n, saturated, seed);
          Tensor g = testing::random_tensor({n}, seed + 1, saturated ? -100.f : -1.f, saturated ? 100.f : 1.f);
          Tensor mm = testing::random_tensor(s.shape(), seed + 2, -0.1f, 0.1f);
          Tensor vv = testing::random_tensor(s.shape(), seed + 3, 1e-4f, 1e-2f);
          Tensor gs = s.cuda(), gg = g.cuda(), gm = mm.cuda(), gv = vv.cuda();
          Tensor x = Tensor::empty({n}), gx = Tensor::empty({n}, DType::F32, Device::CUDA);
          testing::poison(gx);
          StepArgs a;
          a.lr = 1e-2f;
          a.beta = a.beta_next = saturated ? 300.f : 2.f;
          a.e7_mdbnn = 1;
          for (int t = 1; t <= 3; ++t) {
            a.inv_bias1 = 1.f / (1.f - std::pow(0.9f, float(t)));
            a.inv_bias2 = 1.f / (1.f - std::pow(0.999f, float(t)));
            step_tensors(m, Dir::Adam, a, s, g, mm, vv, x);
            step_tensors(m, Dir::Adam, a, gs, gg, gm, gv, gx);
          }
          // expf may differ by an ulp between the GPU and the CPU; near the levels md-bnn's
          // products turn it into ~1e-4 (saturated: β·η·d ~ 10).
          const float tol = saturated ? 3e-4f : 2e-5f;
          const std::string what = m.name() + " levels " + std::to_string(K) + " n " + std::to_string(n) +
                                   (saturated ? " saturated" : "") + ", md-bnn arithmetic";
          INFO(what);
          testing::require_close(gs, s, tol, tol, what + ": stored");
          testing::require_close(gx, x, tol, tol, what + ": x");
          for (float f : gx.to_vector()) REQUIRE(std::isfinite(f));
        }
    }
}

#ifdef MDQ_HAS_CUDA  // calls the launcher directly (exists only in CUDA builds)
TEST_CASE("the fused step falls back to scalar accesses for unaligned pointers") {
  const int64_t n = 1027;
  for (auto [name, K] : {std::pair{"md-tanh-s", 2}, {"md-softmax-s", 4}}) {
    Method m = parse_method(name, K);
    Tensor s = make_stored(m, n, false, 5), g = testing::random_tensor({n}, 6);
    Tensor mm = testing::random_tensor(s.shape(), 7, -0.1f, 0.1f), vv = testing::random_tensor(s.shape(), 8, 1e-4f, 1e-2f);
    // GPU copies one float into a larger buffer: every pointer is 4 bytes past 16-byte alignment.
    auto shifted = [](const Tensor& t) {
      Tensor big = Tensor::zeros({t.numel() + 1}, DType::F32, Device::CUDA);
      std::vector<float> v = t.to_vector();
      v.insert(v.begin(), 0.f);
      big.copy_from(Tensor::from_vector(v, {t.numel() + 1}));
      return big;
    };
    Tensor bs = shifted(s), bg = shifted(g), bm = shifted(mm), bv = shifted(vv), bx = shifted(g);
    StepArgs a;
    a.lr = 1e-2f;
    a.beta = a.beta_next = 2.f;
    a.inv_bias1 = 10.f;
    a.inv_bias2 = 1000.f;
    Tensor x = Tensor::empty({n});
    step_tensors(m, Dir::Adam, a, s, g, mm, vv, x);
    kernels::quant_step(m.rule, Dir::Adam, K, a, bs.data<float>() + 1, bg.data<float>() + 1, bm.data<float>() + 1,
                        bv.data<float>() + 1, bx.data<float>() + 1, n);
    std::vector<float> gx = bx.to_vector(), gsv = bs.to_vector();
    testing::require_close(Tensor::from_vector(std::vector<float>(gx.begin() + 1, gx.end()), {n}), x, 2e-5f, 2e-5f,
                           std::string(name) + " unaligned: x");
    testing::require_close(Tensor::from_vector(std::vector<float>(gsv.begin() + 1, gsv.end()), s.shape()), s, 2e-5f,
                           2e-5f, std::string(name) + " unaligned: stored");
  }
}

namespace {

// One tensor's arrays for the multi-tensor kernel test, each in a CUDA buffer `shift` floats
// past its start (shift 1: 4 bytes past 16-byte alignment, the scalar path).
struct ShiftedArrays {
  int64_t n;
  int shift, grad_shift;
  Tensor s, g, m, v, x;
  float* at(const Tensor& t, int sh) const { return t.defined() ? t.data<float>() + sh : nullptr; }
};
Tensor shifted_copy(const Tensor& host, int shift) {
  if (!host.defined()) return Tensor();
  std::vector<float> v = host.to_vector();
  v.insert(v.begin(), shift, 12345.f);  // never read
  return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}, Device::CUDA);
}

}  // namespace

TEST_CASE("the multi-tensor step equals the per-tensor step bit for bit, odd sizes and misaligned pointers") {
  // n: a lone weight, fewer than a float4, a chunk and one, exactly a chunk, two chunks and
  // three; shifts misalign a whole tensor or only its grad (alignment is decided per tensor).
  struct Spec { int64_t n; int shift, grad_shift; };
  const Spec specs[] = {{1, 0, 0}, {3, 0, 0}, {4097, 0, 0}, {4096, 0, 0}, {8195, 1, 1}, {64, 0, 1}, {12, 1, 0}, {5, 0, 0}};
  for (const char* name : kMethods)
    for (int K : {2, 3, 4}) {
      Method m;
      if (!supported(name, K, m)) continue;
      for (Dir dir : {Dir::Sgd, Dir::Momentum, Dir::Adam}) {
        std::vector<ShiftedArrays> multi, single;
        std::vector<Tensor> cpu_s, cpu_g, cpu_m, cpu_v, cpu_x;
        uint64_t seed = 77 + 100 * K + static_cast<uint64_t>(dir);
        for (const Spec& sp : specs) {
          const int64_t n = sp.n;
          Tensor s = make_stored(m, n, false, ++seed);
          Tensor g = testing::random_tensor({n}, ++seed);
          Tensor mm = uses_m(dir) ? testing::random_tensor(s.shape(), ++seed, -0.1f, 0.1f) : Tensor();
          Tensor vv = uses_v(dir) ? testing::random_tensor(s.shape(), ++seed, 1e-4f, 1e-2f) : Tensor();
          Tensor x = testing::random_tensor({n}, ++seed);
          for (auto* set : {&multi, &single})
            set->push_back({n, sp.shift, sp.grad_shift, shifted_copy(s, sp.shift), shifted_copy(g, sp.grad_shift),
                            shifted_copy(mm, sp.shift), shifted_copy(vv, sp.shift), shifted_copy(x, sp.shift)});
          cpu_s.push_back(s), cpu_g.push_back(g), cpu_m.push_back(mm), cpu_v.push_back(vv), cpu_x.push_back(x);
        }
        std::vector<kernels::QuantStepTensor> table;
        std::vector<const float*> grads;
        for (const ShiftedArrays& t : multi) {
          table.push_back({t.at(t.s, t.shift), t.at(t.m, t.shift), t.at(t.v, t.shift), t.at(t.x, t.shift), t.n});
          grads.push_back(t.at(t.g, t.grad_shift));
        }
        const int count = static_cast<int>(table.size());
        const int64_t work = kernels::quant_step_work_items(table.data(), count);
        REQUIRE(work == 1 + 1 + 2 + 1 + 3 + 1 + 1 + 1);
        Tensor image = Tensor::empty({static_cast<int64_t>(kernels::quant_step_table_bytes(count, work))}, DType::U8);
        kernels::quant_step_table_fill(table.data(), count, image.raw());
        Tensor device_table = image.cuda();
        StepArgs a;
        a.lr = 1e-2f;
        a.beta = 2.f;
        a.beta_next = 2.2f;
        a.momentum = 0.9f;
        a.weight_decay = 1e-2f;
        for (int t = 1; t <= 3; ++t) {
          a.inv_bias1 = 1.f / (1.f - std::pow(0.9f, float(t)));
          a.inv_bias2 = 1.f / (1.f - std::pow(0.999f, float(t)));
          kernels::quant_step_multi(m.rule, dir, K, a, device_table.raw(), count, work, grads.data());
          for (ShiftedArrays& u : single)
            kernels::quant_step(m.rule, dir, K, a, u.at(u.s, u.shift), u.at(u.g, u.grad_shift), u.at(u.m, u.shift),
                                u.at(u.v, u.shift), u.at(u.x, u.shift), u.n);
          for (size_t i = 0; i < cpu_s.size(); ++i)
            step_tensors(m, dir, a, cpu_s[i], cpu_g[i], cpu_m[i], cpu_v[i], cpu_x[i]);
        }
        for (size_t i = 0; i < multi.size(); ++i) {
          const ShiftedArrays &u = multi[i], &e = single[i];
          const std::string what = m.name() + " levels " + std::to_string(K) + " " + direction_name(dir) + " n " +
                                   std::to_string(u.n) + " shift " + std::to_string(u.shift) + "/" +
                                   std::to_string(u.grad_shift);
          INFO(what);
          require_same_bits(u.s, e.s, what + ": stored");
          require_same_bits(u.x, e.x, what + ": x");
          if (u.m.defined()) require_same_bits(u.m, e.m, what + ": m");
          if (u.v.defined()) require_same_bits(u.v, e.v, what + ": v");
          require_same_bits(u.g, e.g, what + ": grad (read only)");
          // And the CPU reference, under the fused-step test's tolerance (fma and libm ulps).
          std::vector<float> gs = u.s.to_vector();
          testing::require_close(Tensor::from_vector(std::vector<float>(gs.begin() + u.shift, gs.end()),
                                                     cpu_s[i].shape()),
                                 cpu_s[i], 2e-5f, 2e-5f, what + ": stored against the CPU");
        }
      }
    }
}

TEST_CASE("MultiStep: one table per parameter set, reused while grads move, rebuilt when an array moves") {
  // 260 parameters: two launches (kQuantMultiMax = 256), so two tables.
  for (auto [name, K] : {std::pair{"md-tanh-s", 2}, {"md-softmax-s", 3}})
    for (Dir dir : {Dir::Sgd, Dir::Adam}) {
      const Method m = parse_method(name, K);
      const int count = 260;
      std::vector<Tensor> s, mm, vv, x, g;
      std::vector<Tensor> rs, rm, rv, rx;  // per-tensor reference, stepped with step_tensors
      for (int i = 0; i < count; ++i) {
        const int64_t n = i % 7 == 0 ? 4097 + i : 1 + i % 13;
        Tensor hs = make_stored(m, n, false, 500 + i);
        s.push_back(hs.cuda()), rs.push_back(hs.cuda());
        Tensor hm = uses_m(dir) ? testing::random_tensor(hs.shape(), 900 + i, -0.1f, 0.1f) : Tensor();
        Tensor hv = uses_v(dir) ? testing::random_tensor(hs.shape(), 1300 + i, 1e-4f, 1e-2f) : Tensor();
        mm.push_back(hm.defined() ? hm.cuda() : Tensor()), rm.push_back(hm.defined() ? hm.cuda() : Tensor());
        vv.push_back(hv.defined() ? hv.cuda() : Tensor()), rv.push_back(hv.defined() ? hv.cuda() : Tensor());
        x.push_back(Tensor::empty({n}, DType::F32, Device::CUDA)), rx.push_back(Tensor::empty({n}, DType::F32, Device::CUDA));
        g.push_back(Tensor());
      }
      MultiStep multi;
      StepArgs a;
      a.lr = 1e-2f;
      a.beta = a.beta_next = 1.5f;
      uint64_t mallocs = 0;
      for (int t = 1; t <= 5; ++t) {
        // Step 3 repeats step 2's allocations (grads), all served by the allocator's cache.
        if (t == 3) mallocs = cuda_allocator_stats().cuda_malloc_calls;
        if (t == 4) {
          REQUIRE(cuda_allocator_stats().cuda_malloc_calls == mallocs);
          s[3] = s[3].clone();  // a stored variable moves: its batch's table is rebuilt
        }
        a.inv_bias1 = 1.f / (1.f - std::pow(0.9f, float(t)));
        a.inv_bias2 = 1.f / (1.f - std::pow(0.999f, float(t)));
        std::vector<StepTensors> params;
        for (int i = 0; i < count; ++i) {
          g[i] = testing::random_tensor(x[i].shape(), 7000 + 1000 * t + i).cuda();  // a new grad every step
          params.push_back({&s[i], &g[i], &mm[i], &vv[i], &x[i]});
          step_tensors(m, dir, a, rs[i], g[i], rm[i], rv[i], rx[i]);
        }
        multi.step(m, dir, a, params);
        INFO(name << " " << direction_name(dir) << " step " << t);
        REQUIRE(multi.tables_built() == (t < 4 ? 2 : 3));
      }
      for (int i = 0; i < count; ++i) {
        const std::string what = std::string(name) + " " + direction_name(dir) + " parameter " + std::to_string(i);
        require_same_bits(s[i], rs[i], what + ": stored");
        require_same_bits(x[i], rx[i], what + ": x");
        if (mm[i].defined()) require_same_bits(mm[i], rm[i], what + ": m");
        if (vv[i].defined()) require_same_bits(vv[i], rv[i], what + ": v");
      }
    }
}

#endif

TEST_CASE("projection, projection backward and rounding kernels match the CPU reference") {
  for (int64_t n : {1, 7, 1000, 65537})
    for (float beta : {1.7f, kCap}) {
      const float range = beta == kCap ? 1.f : 2.f;
      for (int K : {2, 3}) {
        Tensor d = testing::random_tensor({n}, n + K, -range, range), g = testing::random_tensor({n}, n + 9);
        std::string what = "tanh levels " + std::to_string(K) + " n " + std::to_string(n) + " beta " + std::to_string(beta);
        testing::require_close(tanh_project(d.cuda(), beta, K), tanh_project(d, beta, K), 1e-6f, 1e-5f, what);
        // β(1 − t²) g: one ulp of t (CUDA's tanhf vs glibc's) moves it by up to ~2.4e-7 β |g|.
        testing::require_close(tanh_project_backward(d.cuda(), g.cuda(), beta, K), tanh_project_backward(d, g, beta, K),
                               std::max(1e-5f, 1e-6f * beta), 1e-4f, what + " backward");
        testing::require_close(tanh_round(d.cuda(), K), tanh_round(d, K), 0, 0, what + " round");
      }
      for (int K : {2, 3, 4}) {
        Tensor l = testing::random_tensor({K, n}, n + 20 + K, -range, range), g = testing::random_tensor({n}, n + 30);
        std::string what = "softmax levels " + std::to_string(K) + " n " + std::to_string(n) + " beta " + std::to_string(beta);
        // At the cap the projection is ill-conditioned where two logits nearly tie; test it
        // at β = 1.7 and only its rounding (pure comparisons, exact) at the cap.
        if (beta != kCap) {
          testing::require_close(softmax_project(l.cuda(), beta, K), softmax_project(l, beta, K), 1e-6f, 1e-5f, what);
          testing::require_close(softmax_project_backward(l.cuda(), g.cuda(), beta, K),
                                 softmax_project_backward(l, g, beta, K), 1e-5f, 1e-4f, what + " backward");
        }
        testing::require_close(softmax_round(l.cuda(), K), softmax_round(l, K), 0, 0, what + " round");
      }
    }
}

TEST_CASE("the Quantizer on CUDA follows the CPU one and allocates nothing in steady state") {
  for (auto [method, K] : {std::pair{"md-tanh-s", 2}, {"md-tanh-s", 3}, {"md-tanh", 2}, {"md-softmax-s", 4},
                           {"md-softmax", 3}, {"pmf", 2}, {"gd-tanh", 3}, {"bc", 2}}) {
    QuantConfig cfg;
    cfg.method = method;
    cfg.levels = K;
    cfg.interval = 4;
    cfg.rho = 1.5f;
    Tensor w = testing::random_tensor({33, 9}, 3, -0.3f, 0.3f), c = testing::random_tensor({33, 9}, 4);
    nn::ParamRef pc{"w", Var(w.clone(), true), nn::ParamKind::Weight, 9, 33};
    nn::ParamRef pg{"w", Var(w.cuda(), true), nn::ParamKind::Weight, 9, 33};
    Quantizer qc({pc}, cfg), qg({pg}, cfg);
    testing::require_close(pg.var.value(), pc.var.value(), 1e-6f, 1e-5f, std::string(method) + " initial primal");
    uint64_t mallocs = 0;
    for (int t = 0; t < 20; ++t) {
      if (t == 3) mallocs = cuda_allocator_stats().cuda_malloc_calls;
      // g = c + x: the gradient of Σ c x + ½ x², from each quantizer's own primal.
      pc.var.zero_grad();
      pg.var.zero_grad();
      pc.var.accumulate_grad(ops::add(c, pc.var.value()));
      pg.var.accumulate_grad(ops::add(c.cuda(), pg.var.value()));
      qc.step(1e-2f);
      qg.step(1e-2f);
      INFO(method << " levels " << K << " step " << t);
      if (std::string(method) != "bc")
        testing::require_close(pg.var.value(), pc.var.value(), 1e-4f, 1e-4f, std::string(method) + " primal");
    }
    REQUIRE(cuda_allocator_stats().cuda_malloc_calls == mallocs);
    auto rg = qg.rounded_weights(), rc = qc.rounded_weights();
    REQUIRE(rg[0].second.device() == Device::CUDA);
    {
      Quantizer::RoundedScope scope(qg);
      testing::require_close(pg.var.value(), rg[0].second, 0, 0, std::string(method) + " rounded scope");
    }
  }
}

TEST_CASE("the Quantizer on CUDA steps its groups of parameters as it steps each alone, bit for bit") {
  // a gets a grad every step, b every other step (its Adam t lags: a group of its own), c stays
  // float (another group); sizes off the float4 grid, and one of several chunks.
  for (auto [method, dir] : {std::pair{"md-tanh-s", "adam"}, {"md-softmax-s", "adam"}, {"md-tanh", "sgd"},
                             {"md-softmax", "sgd"}}) {
    QuantConfig cfg;
    cfg.method = method;
    cfg.direction = dir;
    cfg.momentum = 0.9f;
    cfg.interval = 2;
    cfg.weight_decay = 1e-3f;
    auto keep_c = [](const nn::ParamRef& r) { return r.name == "c"; };
    const Shape shapes[] = {{97, 93}, {3}, {4097}};
    const char* names[] = {"a", "b", "c"};
    std::vector<nn::ParamRef> together, alone;
    for (int i = 0; i < 3; ++i) {
      Tensor w = testing::random_tensor(shapes[i], 40 + i, -0.5f, 0.5f).cuda();
      together.push_back({names[i], Var(w.clone(), true), nn::ParamKind::Weight, 1, 1});
      alone.push_back({names[i], Var(w.clone(), true), nn::ParamKind::Weight, 1, 1});
    }
    Quantizer q(together, cfg, keep_c);
    std::vector<std::unique_ptr<Quantizer>> singles;
    for (int i = 0; i < 3; ++i)
      singles.push_back(std::make_unique<Quantizer>(std::vector<nn::ParamRef>{alone[i]}, cfg, keep_c));
    for (int t = 0; t < 6; ++t) {
      for (int i = 0; i < 3; ++i) {
        together[i].var.zero_grad();
        alone[i].var.zero_grad();
        if (i == 1 && t % 2 == 1) continue;
        Tensor g = testing::random_tensor(shapes[i], 100 * t + i).cuda();
        together[i].var.accumulate_grad(g);
        alone[i].var.accumulate_grad(g);
      }
      q.step(1e-2f);
      for (auto& s : singles) s->step(1e-2f);
    }
    for (int i = 0; i < 3; ++i) {
      const std::string what = std::string(method) + " " + dir + " parameter " + names[i];
      INFO(what);
      REQUIRE(q.params()[i].steps == singles[i]->params()[0].steps);
      require_same_bits(together[i].var.value(), alone[i].var.value(), what + ": x");
      require_same_bits(q.params()[i].stored, singles[i]->params()[0].stored, what + ": stored");
      require_same_bits(q.params()[i].m, singles[i]->params()[0].m, what + ": m");
    }
  }
}

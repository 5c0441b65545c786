// The fused SGD and Adam CUDA steps (kernels/optim.cu) against the CPU reference over 5 steps
// on random tensors, through the optimizers (aligned tensors: float4 body + scalar tail) and
// through the launchers on offset pointers (misaligned: scalar path; 16-byte offset: vector path).
//
// Tolerances: w and m atol 1e-6 + rtol 1e-6; v rtol 2e-6 plus atol 1e-6 x max|v|. Both sides run
// the same per-element code (kernels/adam_math.h, sgd_math.h); they differ only where nvcc
// contracts a*b+c into one FMA (one rounding fewer), a few ulp after 5 steps. With weight decay,
// g + wd*w can nearly cancel, and that one-ulp difference of the larger term becomes a large
// *relative* error of the tiny v = (1-b2)(g + wd*w)^2 (seen on an H200: 1.1792e-11 vs 1.17922e-11),
// so v also gets an absolute tolerance scaled to the tensor's largest v.
#include <algorithm>
#include <cmath>

#include "engine/optim/adam.h"
#include "engine/optim/sgd.h"
#include "engine/storage.h"
#include "tests/support/testing.h"
#ifdef MDQ_HAS_CUDA
#include "kernels/optim.h"
#endif

using namespace mdq;

namespace {
float max_abs(const Tensor& t) {
  float m = 0.f;
  for (float x : t.to_vector()) m = std::max(m, std::fabs(x));
  return m;
}
}  // namespace


namespace {

const std::vector<int64_t> kSizes = {1, 3, 1001, 65536 + 3};

nn::ParamRef param(const std::string& name, const Tensor& value) {
  return nn::ParamRef{name, Var(value.clone(), true), nn::ParamKind::Weight, value.numel(), value.numel()};
}

// Builds the same parameters on the CPU and the GPU (one per size, plus one that never gets a
// grad), runs 5 steps of make(params) with the same random grads on both, and compares every
// parameter and every state tensor after each step.
template <class Make>
void compare_steps(const std::string& what, Make make, float lr) {
  std::vector<nn::ParamRef> cpu, gpu;
  for (size_t i = 0; i < kSizes.size(); ++i) {
    Tensor w = testing::random_tensor({kSizes[i]}, 100 + i);
    cpu.push_back(param("p" + std::to_string(i), w));
    gpu.push_back(param("p" + std::to_string(i), w.cuda()));
  }
  Tensor frozen = testing::random_tensor({5}, 99);
  cpu.push_back(param("frozen", frozen));
  gpu.push_back(param("frozen", frozen.cuda()));
  auto cpu_opt = make(cpu);
  auto gpu_opt = make(gpu);
  for (int step = 1; step <= 5; ++step) {
    cpu_opt->zero_grad();
    gpu_opt->zero_grad();
    for (size_t i = 0; i < kSizes.size(); ++i) {
      Tensor g = testing::random_tensor({kSizes[i]}, 1000 * step + i);
      cpu[i].var.accumulate_grad(g);
      gpu[i].var.accumulate_grad(g.cuda());
    }
    const uint64_t allocations = cuda_allocator_stats().allocations;
    cpu_opt->step(lr);
    gpu_opt->step(lr);
    REQUIRE(cuda_allocator_stats().allocations == allocations);  // a step allocates nothing on the GPU
    for (size_t i = 0; i < cpu.size(); ++i) {
      const std::string where = what + " step " + std::to_string(step) + ", " + cpu[i].var.value().describe();
      testing::require_close(gpu[i].var.value(), cpu[i].var.value(), 1e-6f, 1e-6f, where + " weight");
    }
    REQUIRE(gpu[kSizes.size()].var.value().to_vector() == frozen.to_vector());  // no grad: untouched
    auto cs = cpu_opt->state(), gs = gpu_opt->state();
    REQUIRE(cs.size() == gs.size());
    for (size_t k = 0; k < cs.size(); ++k) {
      REQUIRE(cs[k].first == gs[k].first);
      const std::string where = what + " step " + std::to_string(step) + ", state " + cs[k].first + " " +
                                gs[k].second->describe();
      if (cs[k].second->dtype() != DType::F32) {
        REQUIRE(gs[k].second->to_vector_i32() == cs[k].second->to_vector_i32());
      } else if (cs[k].first.find("exp_avg_sq") != std::string::npos) {
        testing::require_close(*gs[k].second, *cs[k].second, 1e-6f * max_abs(*cs[k].second), 2e-6f, where);
      } else {
        testing::require_close(*gs[k].second, *cs[k].second, 1e-6f, 1e-6f, where);
      }
    }
  }
}

}  // namespace

TEST_CASE("fused Adam matches the CPU reference over 5 steps") {
  compare_steps("Adam", [](std::vector<nn::ParamRef> p) { return std::make_unique<optim::Adam>(p, optim::AdamOptions{}); },
                1e-2f);
  compare_steps("Adam wd 0.01",
                [](std::vector<nn::ParamRef> p) {
                  return std::make_unique<optim::Adam>(p, optim::AdamOptions{0.8f, 0.99f, 1e-6f, 0.01f});
                },
                1e-2f);
}

TEST_CASE("fused SGD matches the CPU reference over 5 steps") {
  const std::vector<std::pair<std::string, optim::SGDOptions>> cases = {
      {"SGD plain", {0, 0, false}},
      {"SGD momentum 0.9", {0.9f, 0, false}},
      {"SGD nesterov 0.9", {0.9f, 0, true}},
      {"SGD nesterov 0.9 wd 1e-4", {0.9f, 1e-4f, true}},
      {"SGD wd 0.1", {0, 0.1f, false}},
  };
  for (const auto& [name, options] : cases) {
    const optim::SGDOptions o = options;
    compare_steps(name, [o](std::vector<nn::ParamRef> p) { return std::make_unique<optim::SGD>(p, o); }, 0.1f);
  }
}

TEST_CASE("moments follow a model moved to the GPU after the optimizer was built") {
  Tensor w = testing::random_tensor({37}, 5), g = testing::random_tensor({37}, 6);
  nn::ParamRef cpu = param("w", w), moved = param("w", w);
  optim::Adam ref({cpu}, {}), adam({moved}, {});
  moved.var.value() = moved.var.value().cuda();
  cpu.var.accumulate_grad(g);
  moved.var.accumulate_grad(g.cuda());
  ref.step(1e-2f);
  adam.step(1e-2f);
  REQUIRE(adam.state()[1].second->is_cuda());
  testing::require_close(moved.var.value(), cpu.var.value(), 1e-6f, 1e-6f, "moved weight");
}

#ifdef MDQ_HAS_CUDA
TEST_CASE("fused steps on offset pointers: misaligned (scalar) and 16-byte offset (vector)") {
  // Offsets in floats for w, g, m, v: all misaligned, mixed, and all 16-byte aligned but not at
  // the allocation start.
  const std::vector<std::vector<int64_t>> offsets = {{1, 1, 1, 1}, {0, 3, 0, 2}, {4, 4, 8, 4}};
  for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{1001}, int64_t{65536 + 3}}) {
    for (const auto& off : offsets) {
      const std::string where = "n " + std::to_string(n) + " offsets {" + std::to_string(off[0]) + "," +
                                std::to_string(off[1]) + "," + std::to_string(off[2]) + "," + std::to_string(off[3]) + "}";
      std::vector<Tensor> host(4), dev(4);
      for (int k = 0; k < 4; ++k) {
        host[k] = testing::random_tensor({n + 8}, 7 * n + k, k == 3 ? 0.f : -1.f, 1.f);  // v >= 0
        dev[k] = host[k].cuda();
      }
      auto ptr = [&](std::vector<Tensor>& t, int k) { return t[k].data<float>() + off[k]; };
      for (int step = 1; step <= 5; ++step) {
        // Adam on w, g, m, v; then SGD (nesterov, wd) with m as its momentum buffer.
        const AdamMoments a = adam_moments(0.9f, 0.999f, 1e-8f, step);
        float *w = ptr(host, 0), *g = ptr(host, 1), *m = ptr(host, 2), *v = ptr(host, 3);
        for (int64_t i = 0; i < n; ++i) w[i] -= 1e-2f * adam_direction(l2_decayed(g[i], w[i], 1e-3f), m[i], v[i], a);
        kernels::adam_step_f32(ptr(dev, 0), ptr(dev, 1), ptr(dev, 2), ptr(dev, 3), n, 1e-2f, 1e-3f, a);
        for (int64_t i = 0; i < n; ++i)
          w[i] -= 0.1f * sgd_direction(l2_decayed(g[i], w[i], 1e-2f), m[i], 0.9f, true, step == 1);
        kernels::sgd_step_f32(ptr(dev, 0), ptr(dev, 1), ptr(dev, 2), n, 0.1f, 1e-2f, 0.9f, true, step == 1);
      }
      // Whole buffers, so writes outside [offset, offset + n) would show up too.
      testing::require_close(dev[0], host[0], 1e-6f, 1e-6f, where + " w");
      REQUIRE(dev[1].to_vector() == host[1].to_vector());
      testing::require_close(dev[2], host[2], 1e-6f, 1e-6f, where + " m / momentum buffer");
      testing::require_close(dev[3], host[3], 1e-6f * max_abs(host[3]), 2e-6f, where + " v");
    }
  }
}
#endif

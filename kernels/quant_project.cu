// Projection kernels of the quantizer: E1–E3 forward (primal from stored), the tanh and softmax
// projection Jacobians (GD-tanh, PMF; E9) and E11 rounding. Plain grid-stride loops: these run
// at construction, on resume and for evaluation, not every step (the fused step projects).
#include "common/error.h"
#include "kernels/backend.h"
#include "kernels/cuda_common.h"
#include "kernels/grid_stride.cuh"
#include "kernels/quant_project.h"

namespace mdq::kernels {
namespace {

using quant::Dir;
using quant::Rule;

template <Rule R, int K>
__global__ void primal_kernel(const float* s, float beta, float* x, int64_t n) {
  MDQ_GRID_STRIDE(i, n) {
    if constexpr (quant::is_softmax_rule(R)) {
      float sv[K];
#pragma unroll
      for (int l = 0; l < K; ++l) sv[l] = s[l * n + i];
      x[i] = quant::softmax_primal<R, K>(sv, beta);
    } else {
      x[i] = quant::tanh_primal<R, K>(s[i], beta);
    }
  }
}

template <int K>
__global__ void tanh_backward_kernel(const float* dual, const float* g, float beta, float* out, int64_t n) {
  MDQ_GRID_STRIDE(i, n) out[i] = quant::tanh_project_grad<K>(dual[i], beta) * g[i];
}

template <int K>
__global__ void softmax_backward_kernel(const float* logits, const float* g, float beta, float* out, int64_t n) {
  MDQ_GRID_STRIDE(i, n) {
    float sv[K], gs[K];
#pragma unroll
    for (int l = 0; l < K; ++l) sv[l] = logits[l * n + i];
    quant::softmax_project_backward<K>(sv, g[i], beta, gs);
#pragma unroll
    for (int l = 0; l < K; ++l) out[l * n + i] = gs[l];
  }
}

template <Rule R, int K>
__global__ void round_kernel(const float* s, const float* x, float* out, int64_t n) {
  MDQ_GRID_STRIDE(i, n) {
    if constexpr (quant::is_softmax_rule(R)) {
      float sv[K];
#pragma unroll
      for (int l = 0; l < K; ++l) sv[l] = s[l * n + i];
      out[i] = quant::softmax_round<K>(sv);
    } else if constexpr (R == Rule::Float) {
      out[i] = x[i];
    } else {
      out[i] = quant::nearest_level<K>(x[i]);
    }
  }
}

#undef MDQ_GRID_STRIDE

}  // namespace

void quant_primal(Rule rule, int levels, const float* stored, float beta, float* primal, int64_t n) {
  if (n == 0) return;
  bool ok = quant::dispatch_step(rule, Dir::Sgd, levels, [&](auto R, auto, auto K) {
    primal_kernel<decltype(R)::value, decltype(K)::value><<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(stored, beta,
                                                                                                         primal, n);
    CUDA_CHECK_LAUNCH();
  });
  MDQ_CHECK(ok, "quant_primal: unsupported rule " << static_cast<int>(rule) << " with " << levels << " levels");
}

void tanh_project_backward(int levels, const float* dual, const float* grad, float beta, float* grad_dual, int64_t n) {
  if (n == 0) return;
  MDQ_CHECK(levels == 2 || levels == 3, "tanh_project_backward: levels " << levels << " (supported: 2, 3)");
  if (levels == 2) tanh_backward_kernel<2><<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(dual, grad, beta, grad_dual, n);
  else tanh_backward_kernel<3><<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(dual, grad, beta, grad_dual, n);
  CUDA_CHECK_LAUNCH();
}

void softmax_project_backward(int levels, const float* logits, const float* grad, float beta, float* grad_logits,
                              int64_t n) {
  if (n == 0) return;
  MDQ_CHECK(levels >= 2 && levels <= 4, "softmax_project_backward: levels " << levels << " (supported: 2, 3, 4)");
  auto g = cuda::grid_for(n);
  if (levels == 2) softmax_backward_kernel<2><<<g, 256, 0, cuda::stream()>>>(logits, grad, beta, grad_logits, n);
  else if (levels == 3) softmax_backward_kernel<3><<<g, 256, 0, cuda::stream()>>>(logits, grad, beta, grad_logits, n);
  else softmax_backward_kernel<4><<<g, 256, 0, cuda::stream()>>>(logits, grad, beta, grad_logits, n);
  CUDA_CHECK_LAUNCH();
}

void quant_round(Rule rule, int levels, const float* stored, const float* primal, float* rounded, int64_t n) {
  if (n == 0) return;
  bool ok = quant::dispatch_step(rule, Dir::Sgd, levels, [&](auto R, auto, auto K) {
    round_kernel<decltype(R)::value, decltype(K)::value><<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(stored, primal,
                                                                                                        rounded, n);
    CUDA_CHECK_LAUNCH();
  });
  MDQ_CHECK(ok, "quant_round: unsupported rule " << static_cast<int>(rule) << " with " << levels << " levels");
}

void register_quant_project(CudaBackend& b) {
  b.quant_primal = quant_primal;
  b.tanh_project_backward = tanh_project_backward;
  b.softmax_project_backward = softmax_project_backward;
  b.quant_round = quant_round;
}

}  // namespace mdq::kernels

// Fused quantizer step (DESIGN.md E6–E9 with the E8 direction): one pass reads the stored
// variable, g and the moments once and writes the stored variable, the moments and the new
// primal x. Memory-bound by design (benchmarks/bench_md_update.cu measures it against a
// device-to-device copy): float4 loads/stores when aligned, a grid of SMs × 8 blocks striding
// over the arrays, no shared memory. The per-element math is kernels/quant_math.h.
#include "common/error.h"
#include "kernels/backend.h"
#include "kernels/cuda_common.h"
#include "kernels/quant_update.h"

namespace mdq::kernels {
namespace {

using quant::Dir;
using quant::Rule;
using quant::StepArgs;

constexpr int kBlock = 256;

__device__ __forceinline__ float& lane(float4& f, int j) { return j == 0 ? f.x : j == 1 ? f.y : j == 2 ? f.z : f.w; }
__device__ __forceinline__ float4 load4(const float* p, int64_t i) { return reinterpret_cast<const float4*>(p)[i]; }
__device__ __forceinline__ void store4(float* p, int64_t i, float4 f) { reinterpret_cast<float4*>(p)[i] = f; }

// Tanh family: every array holds one float per weight. The first n_vec groups of four go
// through float4; the rest (all of them when unaligned) one at a time.
template <Rule R, Dir D, int K>
__global__ void __launch_bounds__(kBlock) tanh_step_kernel(float* s, const float* g, float* m, float* v, float* x,
                                                           int64_t n, int64_t n_vec, StepArgs a) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t i = t0; i < n_vec; i += stride) {
    float4 S = load4(s, i), G = load4(g, i), M = make_float4(0, 0, 0, 0), V = M, X;
    if constexpr (quant::uses_m(D)) M = load4(m, i);
    if constexpr (quant::uses_v(D)) V = load4(v, i);
#pragma unroll
    for (int j = 0; j < 4; ++j) quant::tanh_step<R, D, K>(lane(S, j), lane(G, j), lane(M, j), lane(V, j), lane(X, j), a);
    store4(s, i, S);
    if constexpr (quant::uses_m(D)) store4(m, i, M);
    if constexpr (quant::uses_v(D)) store4(v, i, V);
    store4(x, i, X);
  }
  for (int64_t i = n_vec * 4 + t0; i < n; i += stride) {
    float S = s[i], M = 0.f, V = 0.f, X;
    if constexpr (quant::uses_m(D)) M = m[i];
    if constexpr (quant::uses_v(D)) V = v[i];
    quant::tanh_step<R, D, K>(S, g[i], M, V, X, a);
    s[i] = S;
    if constexpr (quant::uses_m(D)) m[i] = M;
    if constexpr (quant::uses_v(D)) v[i] = V;
    x[i] = X;
  }
}

// Softmax family: K planes of n floats. Vectorised (vec) when n % 4 == 0 and all aligned:
// a thread then owns four neighbouring weights and reads one float4 from each plane.
template <Rule R, Dir D, int K>
__global__ void __launch_bounds__(kBlock) softmax_step_kernel(float* s, const float* g, float* m, float* v, float* x,
                                                              int64_t n, bool vec, StepArgs a) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (vec) {
    for (int64_t i = t0; i < n / 4; i += stride) {
      float4 S[K], M[K], V[K], G = load4(g, i), X;
#pragma unroll
      for (int l = 0; l < K; ++l) {
        S[l] = load4(s + l * n, i);
        M[l] = quant::uses_m(D) ? load4(m + l * n, i) : make_float4(0, 0, 0, 0);
        V[l] = quant::uses_v(D) ? load4(v + l * n, i) : make_float4(0, 0, 0, 0);
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        float sj[K], mj[K], vj[K];
#pragma unroll
        for (int l = 0; l < K; ++l) sj[l] = lane(S[l], j), mj[l] = lane(M[l], j), vj[l] = lane(V[l], j);
        quant::softmax_step<R, D, K>(sj, lane(G, j), mj, vj, lane(X, j), a);
#pragma unroll
        for (int l = 0; l < K; ++l) lane(S[l], j) = sj[l], lane(M[l], j) = mj[l], lane(V[l], j) = vj[l];
      }
#pragma unroll
      for (int l = 0; l < K; ++l) {
        store4(s + l * n, i, S[l]);
        if constexpr (quant::uses_m(D)) store4(m + l * n, i, M[l]);
        if constexpr (quant::uses_v(D)) store4(v + l * n, i, V[l]);
      }
      store4(x, i, X);
    }
    return;
  }
  for (int64_t i = t0; i < n; i += stride) {
    float S[K], M[K] = {}, V[K] = {};
#pragma unroll
    for (int l = 0; l < K; ++l) {
      S[l] = s[l * n + i];
      if constexpr (quant::uses_m(D)) M[l] = m[l * n + i];
      if constexpr (quant::uses_v(D)) V[l] = v[l * n + i];
    }
    quant::softmax_step<R, D, K>(S, g[i], M, V, x[i], a);
#pragma unroll
    for (int l = 0; l < K; ++l) {
      s[l * n + i] = S[l];
      if constexpr (quant::uses_m(D)) m[l * n + i] = M[l];
      if constexpr (quant::uses_v(D)) v[l * n + i] = V[l];
    }
  }
}

bool aligned16(const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Enough blocks to fill the GPU (SMs × 8), fewer when there is less work.
unsigned blocks_for(int64_t work) {
  const int sms = cuda::sm_count();
  int64_t want = (work + kBlock - 1) / kBlock;
  int64_t cap = static_cast<int64_t>(sms) * 8;
  return static_cast<unsigned>(want < 1 ? 1 : want > cap ? cap : want);
}

}  // namespace

void quant_step(Rule rule, Dir dir, int levels, const StepArgs& args, float* stored, const float* grad, float* m,
                float* v, float* primal, int64_t n) {
  if (n == 0) return;
  const bool aligned = aligned16(stored) && aligned16(grad) && aligned16(m) && aligned16(v) && aligned16(primal);
  bool ok = quant::dispatch_step(rule, dir, levels, [&](auto R, auto D, auto K) {
    constexpr Rule r = decltype(R)::value;
    constexpr Dir d = decltype(D)::value;
    constexpr int k = decltype(K)::value;
    if constexpr (quant::is_softmax_rule(r)) {
      const bool vec = aligned && n % 4 == 0;
      softmax_step_kernel<r, d, k><<<blocks_for(vec ? n / 4 : n), kBlock, 0, cuda::stream()>>>(stored, grad, m, v,
                                                                                              primal, n, vec, args);
    } else {
      const int64_t n_vec = aligned ? n / 4 : 0;
      tanh_step_kernel<r, d, k><<<blocks_for(n_vec + (n - 4 * n_vec)), kBlock, 0, cuda::stream()>>>(
          stored, grad, m, v, primal, n, n_vec, args);
    }
    CUDA_CHECK_LAUNCH();
  });
  MDQ_CHECK(ok, "quant_step: unsupported rule " << static_cast<int>(rule) << " with " << levels << " levels");
}

void register_quant_update(CudaBackend& b) {
  b.quant_step = quant_step;
}

}  // namespace mdq::kernels

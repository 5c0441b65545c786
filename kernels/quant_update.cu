// Fused quantizer step (DESIGN.md E6–E9 with the E8 direction): one pass reads the stored
// variable, g and the moments once and writes the stored variable, the moments and the new
// primal x. Memory-bound by design (benchmarks/bench_md_update.cu measures it against a
// device-to-device copy): float4 loads/stores when aligned, a grid of at most SMs × 8 blocks
// striding over the arrays, no shared memory. Two launchers: quant_step for one tensor, and
// quant_step_multi for many tensors in one launch (a training step's parameters), whose blocks
// take the tensors' chunks from a device table. The per-element math is kernels/quant_math.h.
#include "common/error.h"
#include "kernels/backend.h"
#include "kernels/cuda_common.h"
#include "kernels/cuda_graph.h"
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

// The per-element work, shared by the per-tensor and the multi-tensor kernels so that both
// compute every weight with the same code. Tanh family: every array holds one float per weight;
// group i is weights 4i..4i+3, read and written as float4.
template <Rule R, Dir D, int K>
__device__ __forceinline__ void tanh_group(float* s, const float* g, float* m, float* v, float* x, int64_t i,
                                           const StepArgs& a) {
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
template <Rule R, Dir D, int K>
__device__ __forceinline__ void tanh_one(float* s, const float* g, float* m, float* v, float* x, int64_t i,
                                         const StepArgs& a) {
  float S = s[i], M = 0.f, V = 0.f, X;
  if constexpr (quant::uses_m(D)) M = m[i];
  if constexpr (quant::uses_v(D)) V = v[i];
  quant::tanh_step<R, D, K>(S, g[i], M, V, X, a);
  s[i] = S;
  if constexpr (quant::uses_m(D)) m[i] = M;
  if constexpr (quant::uses_v(D)) v[i] = V;
  x[i] = X;
}

// Softmax family: K planes of n floats. Group i (n % 4 == 0, all aligned): a thread owns four
// neighbouring weights and reads one float4 from each plane.
template <Rule R, Dir D, int K>
__device__ __forceinline__ void softmax_group(float* s, const float* g, float* m, float* v, float* x, int64_t n,
                                              int64_t i, const StepArgs& a) {
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
template <Rule R, Dir D, int K>
__device__ __forceinline__ void softmax_one(float* s, const float* g, float* m, float* v, float* x, int64_t n,
                                            int64_t i, const StepArgs& a) {
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

// One tensor: the first n_vec groups of four go through float4; the rest (all of them when
// unaligned) one at a time.
template <Rule R, Dir D, int K>
__global__ void __launch_bounds__(kBlock) tanh_step_kernel(float* s, const float* g, float* m, float* v, float* x,
                                                           int64_t n, int64_t n_vec, StepArgs a) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t i = t0; i < n_vec; i += stride) tanh_group<R, D, K>(s, g, m, v, x, i, a);
  for (int64_t i = n_vec * 4 + t0; i < n; i += stride) tanh_one<R, D, K>(s, g, m, v, x, i, a);
}

// One tensor, vectorised (vec) when n % 4 == 0 and all aligned.
template <Rule R, Dir D, int K>
__global__ void __launch_bounds__(kBlock) softmax_step_kernel(float* s, const float* g, float* m, float* v, float* x,
                                                              int64_t n, bool vec, StepArgs a) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (vec) {
    for (int64_t i = t0; i < n / 4; i += stride) softmax_group<R, D, K>(s, g, m, v, x, n, i, a);
    return;
  }
  for (int64_t i = t0; i < n; i += stride) softmax_one<R, D, K>(s, g, m, v, x, n, i, a);
}

// The grads of a multi-tensor launch, by value in the kernel's arguments.
struct GradList {
  const float* p[kernels::kQuantMultiMax];
};

// Many tensors: a block per work item (striding over them when there are more than blocks).
// Each tensor takes float4 under quant_step's rule (all its pointers 16-byte aligned, and for
// softmax n % 4 == 0), decided here since the grad's alignment is known only at launch.
template <Rule R, Dir D, int K>
__global__ void __launch_bounds__(kBlock) multi_step_kernel(const QuantStepTensor* tensors, const QuantStepWork* work,
                                                            int64_t n_work, GradList grads, StepArgs a) {
  for (int64_t w = blockIdx.x; w < n_work; w += gridDim.x) {
    const QuantStepWork item = work[w];
    const QuantStepTensor t = tensors[item.tensor];
    const float* g = grads.p[item.tensor];
    const int64_t lo = static_cast<int64_t>(item.chunk) * kQuantChunk;
    const int64_t hi = lo + kQuantChunk < t.n ? lo + kQuantChunk : t.n;
    const bool aligned = ((reinterpret_cast<uintptr_t>(t.stored) | reinterpret_cast<uintptr_t>(g) |
                           reinterpret_cast<uintptr_t>(t.m) | reinterpret_cast<uintptr_t>(t.v) |
                           reinterpret_cast<uintptr_t>(t.primal)) & 15) == 0;
    if constexpr (quant::is_softmax_rule(R)) {
      if (aligned && t.n % 4 == 0) {
        for (int64_t i = lo / 4 + threadIdx.x; i < hi / 4; i += blockDim.x)
          softmax_group<R, D, K>(t.stored, g, t.m, t.v, t.primal, t.n, i, a);
      } else {
        for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x)
          softmax_one<R, D, K>(t.stored, g, t.m, t.v, t.primal, t.n, i, a);
      }
    } else {
      const int64_t vec_end = aligned ? t.n / 4 * 4 : 0;  // weights before it go in groups of four
      for (int64_t i = lo / 4 + threadIdx.x; i < (hi < vec_end ? hi : vec_end) / 4; i += blockDim.x)
        tanh_group<R, D, K>(t.stored, g, t.m, t.v, t.primal, i, a);
      for (int64_t i = (lo > vec_end ? lo : vec_end) + threadIdx.x; i < hi; i += blockDim.x)
        tanh_one<R, D, K>(t.stored, g, t.m, t.v, t.primal, i, a);
    }
  }
}

using cuda::aligned16;

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

void quant_step_multi(Rule rule, Dir dir, int levels, const StepArgs& args, const void* table, int count,
                      int64_t work, const float* const* grads) {
  MDQ_CHECK(count >= 0 && count <= kQuantMultiMax,
            "quant_step_multi: " << count << " tensors in one launch, at most " << kQuantMultiMax);
  if (work == 0) return;
  GradList list{};
  for (int i = 0; i < count; ++i) list.p[i] = grads[i];
  const auto* tensors = static_cast<const QuantStepTensor*>(table);
  const auto* items = reinterpret_cast<const QuantStepWork*>(static_cast<const char*>(table) +
                                                             static_cast<size_t>(count) * sizeof(QuantStepTensor));
  const int64_t cap = static_cast<int64_t>(cuda::sm_count()) * 8;
  const unsigned blocks = static_cast<unsigned>(work < cap ? work : cap);
  bool ok = quant::dispatch_step(rule, dir, levels, [&](auto R, auto D, auto K) {
    constexpr Rule r = decltype(R)::value;
    constexpr Dir d = decltype(D)::value;
    constexpr int k = decltype(K)::value;
    multi_step_kernel<r, d, k><<<blocks, kBlock, 0, cuda::stream()>>>(tensors, items, work, list, args);
    CUDA_CHECK_LAUNCH();
    graph_note_step_args(/*arg=*/4, /*arity=*/5);  // a CUDA graph rewrites `args` before each replay
  });
  MDQ_CHECK(ok, "quant_step_multi: unsupported rule " << static_cast<int>(rule) << " with " << levels << " levels");
}

void register_quant_update(CudaBackend& b) {
  b.quant_step = quant_step;
  b.quant_step_multi = quant_step_multi;
}

}  // namespace mdq::kernels

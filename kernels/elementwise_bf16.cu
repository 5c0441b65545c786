// bf16 elementwise passes (kernels/elementwise_bf16.h): eight elements (16 bytes) per thread and
// step when the pointers allow it, a scalar loop for the rest; memory-bound, so the vector width
// is what matters.
#include "kernels/backend.h"
#include "kernels/bf16.cuh"
#include "kernels/cuda_common.h"
#include "kernels/elementwise_bf16.h"

namespace mdq::kernels {
namespace {

// out[i] = bf16(f(in[0][i], ..., in[N-1][i])) with f on the widened values; vectors of 8 where
// every pointer is 16-byte aligned.
template <int N>
struct Operands {
  const uint16_t* p[N];
};

template <int N, class F>
__global__ void map_kernel(Operands<N> in, uint16_t* out, int64_t n, bool vec, F f) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  // V elements at i (V = 8: the i-th 16-byte word) of every operand, f applied lane by lane.
  auto apply = [&](auto width, int64_t i) {
    constexpr int V = decltype(width)::value;
    float x[N][V], y[V];
#pragma unroll
    for (int j = 0; j < N; ++j) load_bf16<V>(in.p[j] + i * V, x[j]);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      if constexpr (N == 1) y[k] = f(x[0][k]);
      else y[k] = f(x[0][k], x[1][k]);
    }
    store_bf16<V>(out + i * V, y);
  };
  int64_t tail = 0;
  if (vec) {
    for (int64_t v = i0; v < n / 8; v += stride) apply(std::integral_constant<int, 8>{}, v);
    tail = n / 8 * 8;
  }
  for (int64_t i = tail + i0; i < n; i += stride) apply(std::integral_constant<int, 1>{}, i);
}

template <int N, class F>
void map_bf16(Operands<N> in, uint16_t* out, int64_t n, F f) {
  if (n == 0) return;
  bool vec = cuda::aligned16(out);
  for (const uint16_t* p : in.p) vec = vec && cuda::aligned16(p);
  map_kernel<<<cuda::grid_for(vec ? (n + 7) / 8 : n), 256, 0, cuda::stream()>>>(in, out, n, vec, f);
  CUDA_CHECK_LAUNCH();
}

struct BinaryF {
  BinaryOp op;
  __device__ float operator()(float x, float y) const { return binary_op(op, x, y); }
};
struct ActF {
  Activation act;
  __device__ float operator()(float x) const { return activation_value(act, x); }
};
struct GradF {
  Activation act;
  __device__ float operator()(float g, float x) const { return activation_grad(act, g, x); }
};

}  // namespace

void binary_bf16(BinaryOp op, const uint16_t* a, const uint16_t* b, uint16_t* out, int64_t n) {
  map_bf16(Operands<2>{{a, b}}, out, n, BinaryF{op});
}

void activation_forward_bf16(Activation act, const uint16_t* x, uint16_t* out, int64_t n) {
  map_bf16(Operands<1>{{x}}, out, n, ActF{act});
}

void activation_backward_bf16(Activation act, const uint16_t* grad_out, const uint16_t* x, uint16_t* grad_in,
                              int64_t n) {
  map_bf16(Operands<2>{{grad_out, x}}, grad_in, n, GradF{act});
}

void register_elementwise_bf16(CudaBackend& b) {
  b.binary_bf16 = binary_bf16;
  b.activation_forward_bf16 = activation_forward_bf16;
  b.activation_backward_bf16 = activation_backward_bf16;
}

}  // namespace mdq::kernels

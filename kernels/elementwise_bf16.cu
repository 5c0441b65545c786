// bf16 elementwise passes (kernels/elementwise_bf16.h): eight elements (16 bytes) per thread and
// step when the pointers allow it, a scalar loop for the rest; memory-bound, so the vector width
// is what matters.
#include "kernels/backend.h"
#include "kernels/bf16.cuh"
#include "kernels/cuda_common.h"
#include "kernels/elementwise_bf16.h"

namespace mdq::kernels {
namespace {

// out[i] = bf16(f(a[i], b[i])) with f on the widened values; vectors of 8 where all three
// pointers are 16-byte aligned.
template <class F>
__global__ void map2_kernel(const uint16_t* a, const uint16_t* b, uint16_t* out, int64_t n, bool vec, F f) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t i0 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t tail = 0;
  if (vec) {
    const int64_t n8 = n / 8;
    for (int64_t v = i0; v < n8; v += stride) {
      const uint4 av = reinterpret_cast<const uint4*>(a)[v], bv = reinterpret_cast<const uint4*>(b)[v];
      const uint16_t* as = reinterpret_cast<const uint16_t*>(&av);
      const uint16_t* bs = reinterpret_cast<const uint16_t*>(&bv);
      uint4 ov;
      uint16_t* os = reinterpret_cast<uint16_t*>(&ov);
#pragma unroll
      for (int k = 0; k < 8; ++k) os[k] = f_to_bf(f(bf_to_f(as[k]), bf_to_f(bs[k])));
      reinterpret_cast<uint4*>(out)[v] = ov;
    }
    tail = n8 * 8;
  }
  for (int64_t i = tail + i0; i < n; i += stride) out[i] = f_to_bf(f(bf_to_f(a[i]), bf_to_f(b[i])));
}

// out[i] = bf16(f(x[i])), as map2_kernel with one operand.
template <class F>
__global__ void map1_kernel(const uint16_t* x, uint16_t* out, int64_t n, bool vec, F f) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t i0 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t tail = 0;
  if (vec) {
    const int64_t n8 = n / 8;
    for (int64_t v = i0; v < n8; v += stride) {
      const uint4 xv = reinterpret_cast<const uint4*>(x)[v];
      const uint16_t* xs = reinterpret_cast<const uint16_t*>(&xv);
      uint4 ov;
      uint16_t* os = reinterpret_cast<uint16_t*>(&ov);
#pragma unroll
      for (int k = 0; k < 8; ++k) os[k] = f_to_bf(f(bf_to_f(xs[k])));
      reinterpret_cast<uint4*>(out)[v] = ov;
    }
    tail = n8 * 8;
  }
  for (int64_t i = tail + i0; i < n; i += stride) out[i] = f_to_bf(f(bf_to_f(x[i])));
}

template <class F>
void map1(const uint16_t* x, uint16_t* out, int64_t n, F f) {
  if (n == 0) return;
  const bool vec = cuda::aligned16(x) && cuda::aligned16(out);
  map1_kernel<<<cuda::grid_for(vec ? (n + 7) / 8 : n), 256, 0, cuda::stream()>>>(x, out, n, vec, f);
  CUDA_CHECK_LAUNCH();
}

template <class F>
void map2(const uint16_t* a, const uint16_t* b, uint16_t* out, int64_t n, F f) {
  if (n == 0) return;
  const bool vec = cuda::aligned16(a) && cuda::aligned16(b) && cuda::aligned16(out);
  map2_kernel<<<cuda::grid_for(vec ? (n + 7) / 8 : n), 256, 0, cuda::stream()>>>(a, b, out, n, vec, f);
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
  map2(a, b, out, n, BinaryF{op});
}

void activation_forward_bf16(Activation act, const uint16_t* x, uint16_t* out, int64_t n) {
  map1(x, out, n, ActF{act});
}

void activation_backward_bf16(Activation act, const uint16_t* grad_out, const uint16_t* x, uint16_t* grad_in,
                              int64_t n) {
  map2(grad_out, x, grad_in, n, GradF{act});
}

void register_elementwise_bf16(CudaBackend& b) {
  b.binary_bf16 = binary_bf16;
  b.activation_forward_bf16 = activation_forward_bf16;
  b.activation_backward_bf16 = activation_backward_bf16;
}

}  // namespace mdq::kernels

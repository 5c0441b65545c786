// Softmax cross-entropy (forward, backward) and top-k accuracy counting. One warp per row: the
// rows are short (10 to 1000 classes), so a warp covers a row in a few strided passes and
// reduces it with shuffles, with no shared memory and no block-level synchronisation.
#include <cfloat>

#include "kernels/backend.h"
#include "kernels/cuda_common.h"
#include "kernels/label_rank.h"
#include "kernels/loss.h"

namespace mdq::kernels {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 8;

__device__ float warp_max(float v) {
  for (int o = kWarp / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ int warp_sum_int(int v) {
  for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// ---------------------------------------------------------------- kernels

// Row i: m = max_j x_j, s = sum_j exp(x_j - m); loss_i = log s + m - x_label (the stable
// form of -log softmax(x)_label); probs_j = exp(x_j - m) / s. The whole warp takes the same
// branch (one row per warp), so the shuffles always see 32 active lanes.
__global__ void cross_entropy_forward_kernel(const float* logits, const int32_t* labels, int64_t rows, int64_t cols,
                                             float* probs, float* row_loss, uint32_t* bad) {
  const int64_t row = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const float* x = logits + row * cols;
  const int32_t label = labels[row];
  if (label < 0 || label >= cols) {
    if (lane == 0) {
      atomicMax(bad, static_cast<uint32_t>(rows - row));
      row_loss[row] = 0.f;
    }
    return;
  }
  float m = -FLT_MAX;
  for (int64_t j = lane; j < cols; j += kWarp) m = fmaxf(m, x[j]);
  m = warp_max(m);
  float s = 0.f;
  for (int64_t j = lane; j < cols; j += kWarp) s += expf(x[j] - m);
  s = warp_sum(s);
  if (probs) {
    const float inv = 1.f / s;
    for (int64_t j = lane; j < cols; j += kWarp) probs[row * cols + j] = expf(x[j] - m) * inv;
  }
  if (lane == 0) row_loss[row] = logf(s) + m - x[label];
}

// One block, fixed order of additions (deterministic): loss[0] = sum(row_loss) / rows.
__global__ void mean_kernel(const float* row_loss, int64_t rows, float* loss) {
  __shared__ float partial[256];
  float acc = 0.f;
  for (int64_t i = threadIdx.x; i < rows; i += blockDim.x) acc += row_loss[i];
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) loss[0] = partial[0] / static_cast<float>(rows);
}

__global__ void cross_entropy_backward_kernel(const float* probs, const int32_t* labels, int64_t rows, int64_t cols,
                                              float scale, const float* scale_device, float* grad) {
  const float f = (scale_device ? scale * scale_device[0] : scale) / static_cast<float>(rows);
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = i / cols, j = i % cols;
    const float onehot = labels[r] == j ? 1.f : 0.f;
    grad[i] = (probs[i] - onehot) * f;
  }
}

// Row i counts when the label's rank (kernels/label_rank.h: larger logit first, ties to the lower
// index, any non-finite logit ranks nowhere) is below k.
__global__ void topk_kernel(const float* logits, const int32_t* labels, int64_t rows, int64_t cols, int k,
                            uint32_t* count, uint32_t* bad) {
  const int64_t row = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const float* x = logits + row * cols;
  const int32_t label = labels[row];
  if (label < 0 || label >= cols) {
    if (lane == 0) atomicMax(bad, static_cast<uint32_t>(rows - row));
    return;
  }
  const float v = x[label];
  int ahead = 0, nonfinite = 0;
  for (int64_t j = lane; j < cols; j += kWarp) {
    ahead += rank::outranks(x[j], j, v, label) ? 1 : 0;
    nonfinite += rank::finite(x[j]) ? 0 : 1;
  }
  ahead = warp_sum_int(ahead);
  nonfinite = warp_sum_int(nonfinite);
  if (lane == 0 && nonfinite == 0 && ahead < k) atomicAdd(count, 1u);  // integer atomics: order-independent
}

unsigned row_blocks(int64_t rows) {
  return static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

}  // namespace

// ---------------------------------------------------------------- launchers

void cross_entropy_forward_f32(const float* logits, const int32_t* labels, int64_t rows, int64_t cols, float* probs,
                               float* row_loss, float* loss, uint32_t* bad) {
  CUDA_CHECK(cudaMemsetAsync(bad, 0, sizeof(uint32_t), cuda::stream()));
  if (rows == 0) return;
  cross_entropy_forward_kernel<<<row_blocks(rows), kWarp * kWarpsPerBlock, 0, cuda::stream()>>>(
      logits, labels, rows, cols, probs, row_loss, bad);
  CUDA_CHECK_LAUNCH();
  mean_kernel<<<1, 256, 0, cuda::stream()>>>(row_loss, rows, loss);
  CUDA_CHECK_LAUNCH();
}

void cross_entropy_backward_f32(const float* probs, const int32_t* labels, int64_t rows, int64_t cols, float scale,
                                const float* scale_device, float* grad) {
  const int64_t n = rows * cols;
  if (n == 0) return;
  cross_entropy_backward_kernel<<<cuda::grid_for(n), 256, 0, cuda::stream()>>>(probs, labels, rows, cols, scale,
                                                                              scale_device, grad);
  CUDA_CHECK_LAUNCH();
}

void count_topk_correct_f32(const float* logits, const int32_t* labels, int64_t rows, int64_t cols, int k,
                            uint32_t* count, uint32_t* bad) {
  CUDA_CHECK(cudaMemsetAsync(bad, 0, sizeof(uint32_t), cuda::stream()));
  CUDA_CHECK(cudaMemsetAsync(count, 0, sizeof(uint32_t), cuda::stream()));
  if (rows == 0) return;
  topk_kernel<<<row_blocks(rows), kWarp * kWarpsPerBlock, 0, cuda::stream()>>>(logits, labels, rows, cols, k, count,
                                                                              bad);
  CUDA_CHECK_LAUNCH();
}

void register_loss(CudaBackend& b) {
  b.cross_entropy_forward_f32 = cross_entropy_forward_f32;
  b.cross_entropy_backward_f32 = cross_entropy_backward_f32;
  b.count_topk_correct_f32 = count_topk_correct_f32;
}

}  // namespace mdq::kernels

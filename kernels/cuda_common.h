// What every CUDA file of the backend shares (kernels/ include nothing from engine/): the one
// stream all work is queued on, the cuBLAS and cuDNN handles bound to it, a scratch workspace,
// device queries, the grid size of a grid-stride loop, and the checks that turn a failed call
// into an mdq::Error naming the call, the file, the line and the library's own message.
// CUDA builds only: included by kernels/*.cu and by CUDA-only benchmarks and tests.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cstddef>
#include <cstdint>

#include "kernels/host_device.h"

namespace mdq::cuda {

cudaStream_t stream();
cublasHandle_t cublas();
cudnnHandle_t cudnn();

// Scratch memory for cuDNN/cuBLAS workspaces; grows, never shrinks, lives on the stream.
void* workspace(size_t bytes);

// Multiprocessors of the current device (read once), for grids sized to fill the GPU.
int sm_count();
// The current device's compute capability as 10 major + minor (90 for H100/H200), cached.
int compute_capability();

[[noreturn]] void throw_cuda_error(cudaError_t e, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t s, const char* call, const char* file, int line);
[[noreturn]] void throw_cudnn_error(cudnnStatus_t s, const char* call, const char* file, int line);

// Whether p may be read or written 16 bytes at a time (null, an operand not given, may).
inline bool aligned16(const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Grid size for a grid-stride loop over n elements.
inline unsigned grid_for(long long n, int block = 256) {
  long long g = (n + block - 1) / block;
  if (g > 65535LL * 32) g = 65535LL * 32;
  return static_cast<unsigned>(g < 1 ? 1 : g);
}

}  // namespace mdq::cuda

#define CUDA_CHECK(call)                                                                    \
  do {                                                                                      \
    cudaError_t mdq_e_ = (call);                                                            \
    if (mdq_e_ != cudaSuccess) ::mdq::cuda::throw_cuda_error(mdq_e_, #call, __FILE__, __LINE__); \
  } while (0)
#define CUBLAS_CHECK(call)                                                                    \
  do {                                                                                        \
    cublasStatus_t mdq_s_ = (call);                                                           \
    if (mdq_s_ != CUBLAS_STATUS_SUCCESS) ::mdq::cuda::throw_cublas_error(mdq_s_, #call, __FILE__, __LINE__); \
  } while (0)
#define CUDNN_CHECK(call)                                                                    \
  do {                                                                                       \
    cudnnStatus_t mdq_s_ = (call);                                                           \
    if (mdq_s_ != CUDNN_STATUS_SUCCESS) ::mdq::cuda::throw_cudnn_error(mdq_s_, #call, __FILE__, __LINE__); \
  } while (0)
// After a kernel launch: catches bad launch configurations at the launch site.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())


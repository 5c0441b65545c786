// The CUDA context behind kernels/cuda_common.h: created on first use, never destroyed (its
// handles must outlive static teardown), and the error messages of the CUDA_CHECK family.
#include <sstream>

#include "common/error.h"
#include "kernels/cuda_common.h"
#include "kernels/device_memory.h"

namespace mdq::cuda {
namespace {

struct Context {
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  cudnnHandle_t cudnn = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  Context() {
    const kernels::DeviceProbe probe = kernels::probe_device();
    MDQ_CHECK(probe.available, "CUDA requested but " << probe.reason);
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&cublas));
    CUBLAS_CHECK(cublasSetStream(cublas, stream));
    CUDNN_CHECK(cudnnCreate(&cudnn));
    CUDNN_CHECK(cudnnSetStream(cudnn, stream));
  }
};

Context& context() {
  static Context* c = new Context();  // lives to process exit; handles outlive static teardown
  return *c;
}

[[noreturn]] void raise(const char* lib, const char* what, const char* call, const char* file, int line) {
  std::ostringstream s;
  s << lib << " call failed: " << call << " at " << file << ":" << line << ": " << what;
  throw Error(s.str());
}

}  // namespace

cudaStream_t stream() { return context().stream; }
cublasHandle_t cublas() { return context().cublas; }
cudnnHandle_t cudnn() { return context().cudnn; }

void* workspace(size_t bytes) {
  Context& c = context();
  if (bytes > c.workspace_bytes) {
    if (c.workspace) {
      CUDA_CHECK(cudaStreamSynchronize(c.stream));
      CUDA_CHECK(cudaFree(c.workspace));
    }
    CUDA_CHECK(cudaMalloc(&c.workspace, bytes));
    c.workspace_bytes = bytes;
  }
  return c.workspace;
}

int sm_count() {
  static const int sms = [] {
    int dev = 0, count = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, dev));
    return count;
  }();
  return sms;
}

int compute_capability() {
  static const int cc = [] {
    int dev = 0, major = 0, minor = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    return 10 * major + minor;
  }();
  return cc;
}

void throw_cuda_error(cudaError_t e, const char* call, const char* file, int line) {
  raise("CUDA", cudaGetErrorString(e), call, file, line);
}
void throw_cublas_error(cublasStatus_t s, const char* call, const char* file, int line) {
  raise("cuBLAS", cublasGetStatusString(s), call, file, line);
}
void throw_cudnn_error(cudnnStatus_t s, const char* call, const char* file, int line) {
  raise("cuDNN", cudnnGetErrorString(s), call, file, line);
}

}  // namespace mdq::cuda

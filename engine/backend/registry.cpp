// The backend registry (engine/backend/registry.h). The CUDA backend registers itself by one
// explicit call, not by static initializers: libmdq is a static library, and a kernels/*.cu
// object that nothing references would be dropped by the linker together with its registration.
#include "engine/backend/registry.h"

namespace mdq::backend {

const CudaBackend& cuda() {
  static const CudaBackend table = [] {
    CudaBackend t;
#ifdef MDQ_HAS_CUDA
    kernels::register_cuda_backend(t);
#endif
    return t;
  }();
  return table;
}

bool has_cuda() { return cuda().probe_device != nullptr; }

void throw_not_registered(const char* op) {
  MDQ_FAIL(op << ": no CUDA implementation is registered"
              << (has_cuda() ? " (the CUDA backend does not provide this op; see kernels/backend.cu)"
                             : " (this build has no CUDA backend: configured without nvcc or with -DMDQ_CUDA=OFF)"));
}

}  // namespace mdq::backend

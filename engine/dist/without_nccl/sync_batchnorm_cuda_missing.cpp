// Stands in for with_nccl/sync_batchnorm_cuda.cpp: CUDA ranks cannot exist without NCCL.
#include "engine/dist/sync_batchnorm_cuda.h"

namespace mdq::dist {

Tensor sync_bn_forward_cuda(Communicator&, const Tensor&, const Tensor&, const Tensor&, Tensor&, Tensor&, float, float, bool,
                            SyncBnSaved&) {
  MDQ_FAIL("sync BN on CUDA tensors: mdq was built without NCCL");
}
ops::BatchNormGrads sync_bn_backward_cuda(Communicator&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                          const SyncBnSaved&) {
  MDQ_FAIL("sync BN on CUDA tensors: mdq was built without NCCL");
}

}  // namespace mdq::dist

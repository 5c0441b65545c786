// The list of what the CUDA backend implements (kernels/backend.h): each kernels/X.cu fills the
// slots of its own entry points. Called once, by the engine's registry.
#include "kernels/backend.h"

namespace mdq::kernels {

void register_device_memory(CudaBackend& b);
void register_cuda_graph(CudaBackend& b);
void register_copy_spans(CudaBackend& b);
void register_elementwise(CudaBackend& b);
void register_elementwise_bf16(CudaBackend& b);
void register_activation(CudaBackend& b);
void register_batchnorm(CudaBackend& b);
void register_batchnorm_nhwc(CudaBackend& b);
void register_pooling(CudaBackend& b);
void register_loss(CudaBackend& b);
void register_matmul(CudaBackend& b);
void register_rowwise(CudaBackend& b);
void register_conv2d(CudaBackend& b);
void register_quant_project(CudaBackend& b);
void register_quant_update(CudaBackend& b);
void register_bitpack(CudaBackend& b);
void register_binary_conv(CudaBackend& b);
void register_w1a16_conv(CudaBackend& b);
void register_binary_act(CudaBackend& b);
void register_nhwc_bf16(CudaBackend& b);
void register_stem_conv(CudaBackend& b);
void register_stem_conv_mma(CudaBackend& b);

void register_cuda_backend(CudaBackend& b) {
  register_device_memory(b);
  register_cuda_graph(b);
  register_copy_spans(b);
  register_elementwise(b);
  register_elementwise_bf16(b);
  register_activation(b);
  register_batchnorm(b);
  register_batchnorm_nhwc(b);
  register_pooling(b);
  register_loss(b);
  register_matmul(b);
  register_rowwise(b);
  register_conv2d(b);
  register_quant_project(b);
  register_quant_update(b);
  register_bitpack(b);
  register_binary_conv(b);
  register_w1a16_conv(b);
  register_binary_act(b);
  register_nhwc_bf16(b);
  register_stem_conv(b);
  register_stem_conv_mma(b);
}

}  // namespace mdq::kernels

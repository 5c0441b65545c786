// The layout changes between NCHW f32 and NHWC bf16 activations: tiled transposes on the GPU
// (kernels/nhwc_bf16.cu), the plain loops of kernels/nhwc_bf16.h's reference on the CPU.
#include "engine/ops/layout.h"

#include "engine/backend/registry.h"
#include "engine/precision.h"

namespace mdq::ops {
namespace {
using backend::CudaBackend;
using backend::dispatch;
namespace reference = kernels::reference;

bool g_nhwc_on_cpu = false;

int narrow(const char* op, int64_t c) {
  MDQ_CHECK(c <= (int64_t{1} << 30), op << ": " << c << " channels is more than the kernels take");
  return static_cast<int>(c);
}
}  // namespace

bool is_nhwc_bf16(const Tensor& t) { return t.defined() && t.ndim() == 4 && t.dtype() == DType::BF16; }

bool nhwc_bf16_activations(Device device) {
  return precision() == Precision::BF16 && (device == Device::CUDA || g_nhwc_on_cpu);
}

NhwcBf16OnCpu::NhwcBf16OnCpu() : previous_(g_nhwc_on_cpu) { g_nhwc_on_cpu = true; }
NhwcBf16OnCpu::~NhwcBf16OnCpu() { g_nhwc_on_cpu = previous_; }

Shape nchw_shape(const Tensor& t) {
  if (!is_nhwc_bf16(t)) return t.shape();
  return {t.dim(0), t.dim(3), t.dim(1), t.dim(2)};
}

int64_t channels(const Tensor& t) { return is_nhwc_bf16(t) ? t.dim(3) : t.dim(1); }

Tensor to_nhwc_bf16(const Tensor& x) {
  const char* op = "to_nhwc_bf16";
  check_dtype(op, x, DType::F32);
  check_ndim(op, x, 4);
  const int64_t N = x.dim(0), C = x.dim(1), HW = x.dim(2) * x.dim(3);
  Tensor y = Tensor::empty({N, x.dim(2), x.dim(3), C}, DType::BF16, x.device());
  dispatch(op, x.device(), reference::nchw_f32_to_nhwc<uint16_t>, &CudaBackend::nchw_f32_to_nhwc_bf16)(
      x.data<float>(), y.data<uint16_t>(), N, narrow(op, C), HW);
  return y;
}

Tensor to_nchw_f32(const Tensor& x) {
  const char* op = "to_nchw_f32";
  check_dtype(op, x, DType::BF16);
  check_ndim(op, x, 4);
  const int64_t N = x.dim(0), HW = x.dim(1) * x.dim(2), C = x.dim(3);
  Tensor y = Tensor::empty({N, C, x.dim(1), x.dim(2)}, DType::F32, x.device());
  dispatch(op, x.device(), reference::nhwc_bf16_to_nchw_f32, &CudaBackend::nhwc_bf16_to_nchw_f32)(
      x.data<uint16_t>(), y.data<float>(), N, HW, narrow(op, C));
  return y;
}

}  // namespace mdq::ops

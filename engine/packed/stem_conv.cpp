// The direct stem (engine/packed/stem_conv.h): argument checks, then one dispatch to
// kernels/stem_conv.h's CPU reference or its CUDA launcher, by device and output type, or first,
// when asked for, to the tensor-core launcher (kernels/stem_conv_mma.h) on CUDA.
#include "engine/packed/stem_conv.h"

#include <cstdlib>
#include <cstring>

#include "common/window.h"
#include "engine/backend/registry.h"
#include "kernels/stem_conv.h"

namespace mdq::packed {
namespace {

using backend::CudaBackend;
using backend::cuda_impl;
using backend::dispatch;

int narrow(int64_t v) { return static_cast<int>(v); }

// One output form: the tensor-core launcher where it is asked for and runs (it returns false,
// launching nothing, below compute capability 8.0), else the direct kernel or its CPU reference.
template <class T, class Direct, class TensorCores>
void run_stem(const char* op, Device device, StemArithmetic arithmetic, const kernels::StemConvArgs& a, T* out,
              Direct cpu, Direct CudaBackend::*direct, TensorCores CudaBackend::*tensor_cores) {
  if (device == Device::CUDA && on_tensor_cores(arithmetic)) {
    if (cuda_impl(op, tensor_cores)(a, out, stem_mma_operands(arithmetic))) return;
  }
  dispatch(op, device, cpu, direct)(a, out);
}

}  // namespace

kernels::StemMmaOperands stem_mma_operands(StemArithmetic a) {
  return a == StemArithmetic::SplitBf16TensorCores ? kernels::StemMmaOperands::SplitBf16
                                                   : kernels::StemMmaOperands::Bf16;
}

bool stem_conv_fits(int64_t C, int64_t O, int64_t KH, int64_t KW, const ops::Conv2dParams& p) {
  // The kernel's geometry is int: a padding past 2^20 (nothing real) is refused rather than narrowed.
  return p.groups == 1 && p.padding <= (1 << 20) && kernels::stem_conv_fits(C, O, KH, KW, p.stride, p.padding);
}

bool stem_conv_fits(const Tensor& weight, const ops::Conv2dParams& p) {
  return weight.defined() && weight.ndim() == 4 &&
         stem_conv_fits(weight.dim(1), weight.dim(0), weight.dim(2), weight.dim(3), p);
}

bool stem_signs_fit(const Tensor& weight, const ops::Conv2dParams& p) {
  return stem_conv_fits(weight, p) && weight.dim(0) % 32 == 0;
}

bool stem_direct_enabled() {
  const char* e = std::getenv("MDQ_STEM_DIRECT");
  return e == nullptr || std::strcmp(e, "0") != 0;
}

bool stem_tensor_cores_available(Device device) {
  return device == Device::CUDA &&
         cuda_impl("stem_tensor_cores_available", &CudaBackend::stem_conv_mma_supported)();
}

kernels::StemConvArgs stem_conv_args(const char* op, const Tensor& x, const Tensor& weight, const Tensor& scale,
                                     const Tensor& shift, const ops::Conv2dParams& p, bool relu, bool signs,
                                     Shape* out_shape) {
  check_dtype(op, x, DType::F32);
  check_ndim(op, x, 4);
  check_dtype(op, weight, DType::F32);
  check_ndim(op, weight, 4);
  check_same_device(op, x, weight);
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const int64_t O = weight.dim(0), KH = weight.dim(2), KW = weight.dim(3);
  MDQ_CHECK(weight.dim(1) == C, op << ": weight " << weight.describe() << " does not take the " << C
                                   << " channels of images " << x.describe());
  MDQ_CHECK(stem_conv_fits(weight, p), op << ": the direct kernel does not take weight " << weight.describe()
                                          << " with stride " << p.stride << ", padding " << p.padding << ", groups "
                                          << p.groups << " (it takes C <= 4, O in {16, 32, 64}, windows up to 7x7, "
                                          << "stride 1 or 2, groups 1)");
  MDQ_CHECK(!signs || O % 32 == 0, op << ": packs the signs of 32 filters a word, so O must be 32 or 64, not " << O
                                      << " (weight " << weight.describe() << ")");
  for (const Tensor* t : {&scale, &shift}) {
    if (!t->defined()) continue;
    check_dtype(op, *t, DType::F32);
    check_same_device(op, x, *t);
    MDQ_CHECK(t->numel() == O, op << ": " << t->describe() << " must hold one value per filter of "
                                  << weight.describe());
  }
  MDQ_CHECK(H <= (1 << 20) && W <= (1 << 20), op << ": images " << x.describe() << " are too large");
  const int64_t OH = ops::window_output_size(H, KH, p.stride, p.padding);
  const int64_t OW = ops::window_output_size(W, KW, p.stride, p.padding);
  MDQ_CHECK(OH >= 1 && OW >= 1, op << ": window " << KH << "x" << KW << " larger than the padded images "
                                   << x.describe());
  MDQ_CHECK(N * OH * OW < (int64_t(1) << 31), op << ": " << N * OH * OW << " output pixels, more than the kernel counts");
  *out_shape = {N, OH, OW, O};

  kernels::StemConvArgs a;
  a.x = x.data<float>();
  a.w = weight.data<float>();
  a.scale = scale.defined() ? scale.data<float>() : nullptr;
  a.shift = shift.defined() ? shift.data<float>() : nullptr;
  a.N = narrow(N), a.C = narrow(C), a.H = narrow(H), a.W = narrow(W), a.O = narrow(O);
  a.KH = narrow(KH), a.KW = narrow(KW), a.stride = narrow(p.stride), a.pad = narrow(p.padding);
  a.relu = relu;
  return a;
}

Tensor stem_conv_nhwc(const Tensor& x, const Tensor& weight, const Tensor& scale, const Tensor& shift,
                      const ops::Conv2dParams& p, bool relu, DType out, StemArithmetic arithmetic) {
  const char* op = "stem_conv_nhwc";
  MDQ_CHECK(out == DType::BF16 || out == DType::F32, op << ": writes bf16 or f32, not " << dtype_name(out));
  Shape shape;
  const kernels::StemConvArgs a = stem_conv_args(op, x, weight, scale, shift, p, relu, false, &shape);
  Tensor y = Tensor::empty(shape, out, x.device());
  if (y.numel() == 0) return y;
  if (out == DType::BF16)
    run_stem(op, x.device(), arithmetic, a, y.data<uint16_t>(), kernels::reference::stem_conv_nhwc<uint16_t>,
             &CudaBackend::stem_conv_nhwc_bf16, &CudaBackend::stem_conv_mma_nhwc_bf16);
  else
    run_stem(op, x.device(), arithmetic, a, y.data<float>(), kernels::reference::stem_conv_nhwc<float>,
             &CudaBackend::stem_conv_nhwc_f32, &CudaBackend::stem_conv_mma_nhwc_f32);
  return y;
}

Tensor stem_conv_signs(const Tensor& x, const Tensor& weight, const Tensor& scale, const Tensor& shift,
                       const ops::Conv2dParams& p, bool relu, StemArithmetic arithmetic) {
  const char* op = "stem_conv_signs";
  Shape shape;
  const kernels::StemConvArgs a = stem_conv_args(op, x, weight, scale, shift, p, relu, true, &shape);
  shape.back() /= 32;
  Tensor bits = Tensor::empty(shape, DType::U32, x.device());
  if (bits.numel() == 0) return bits;
  run_stem(op, x.device(), arithmetic, a, bits.data<uint32_t>(), kernels::reference::stem_conv_signs,
           &CudaBackend::stem_conv_signs, &CudaBackend::stem_conv_mma_signs);
  return bits;
}

}  // namespace mdq::packed

// CPU reference and one dispatch each for max, average and global average pooling (rules in
// engine/ops/pooling.h). The backward passes gather over the outputs covering each input, the
// same formulation as the CUDA kernels (kernels/pooling.cu).
#include "engine/ops/pooling.h"

#include <algorithm>
#include <cmath>

#include "common/window.h"
#include "engine/backend/registry.h"

namespace mdq::ops {
namespace {

using backend::CudaBackend;
using backend::dispatch;
using kernels::Pool2dShape;

Pool2dShape geometry(const char* op, const Shape& in, int64_t kernel, int64_t stride, int64_t padding) {
  MDQ_CHECK(in.size() == 4, op << ": expected an NCHW input, got shape " << shape_str(in));
  MDQ_CHECK(kernel >= 1 && stride >= 1 && padding >= 0, op << ": kernel " << kernel << ", stride " << stride
                                                           << ", padding " << padding
                                                           << " (need kernel >= 1, stride >= 1, padding >= 0)");
  MDQ_CHECK(padding <= kernel / 2, op << ": padding " << padding << " exceeds half the kernel " << kernel
                                      << " (a window could hold padding only)");
  MDQ_CHECK(in[2] + 2 * padding >= kernel && in[3] + 2 * padding >= kernel,
            op << ": kernel " << kernel << " is larger than the padded input " << shape_str(in) << " with padding "
               << padding);
  MDQ_CHECK(in[2] < (int64_t(1) << 31) / std::max<int64_t>(in[3], 1), op << ": plane too large " << shape_str(in));
  return {in[0] * in[1],
          static_cast<int>(in[2]),
          static_cast<int>(in[3]),
          static_cast<int>(pool_output_size(in[2], kernel, stride, padding)),
          static_cast<int>(pool_output_size(in[3], kernel, stride, padding)),
          static_cast<int>(kernel),
          static_cast<int>(stride),
          static_cast<int>(padding)};
}

// Output indices o (one axis) whose window [o*s - p, o*s - p + k) covers input index i.
void covering(int64_t i, const Pool2dShape& g, int64_t out_n, int64_t& lo, int64_t& hi) {
  const int64_t first = i + g.padding - g.kernel + 1;
  lo = first <= 0 ? 0 : (first + g.stride - 1) / g.stride;
  hi = std::min<int64_t>((i + g.padding) / g.stride, out_n - 1);
}

void check_grad_out(const char* op, const Tensor& grad_out, const Shape& expected) {
  check_dtype(op, grad_out, DType::F32);
  MDQ_CHECK(grad_out.shape() == expected,
            op << ": grad_out " << grad_out.describe() << " does not match the output shape " << shape_str(expected));
}

void max_forward_cpu(const Pool2dShape& g, const float* px, float* po, int32_t* pa) {
  for (int64_t p = 0; p < g.planes; ++p) {
    const float* plane = px + p * g.h * g.w;
    for (int64_t oh = 0; oh < g.out_h; ++oh)
      for (int64_t ow = 0; ow < g.out_w; ++ow) {
        float best = -INFINITY;
        int64_t idx = -1;
        for (int64_t ih = oh * g.stride - g.padding; ih < oh * g.stride - g.padding + g.kernel; ++ih)
          for (int64_t iw = ow * g.stride - g.padding; iw < ow * g.stride - g.padding + g.kernel; ++iw) {
            if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
            const float v = plane[ih * g.w + iw];
            if (idx < 0 || v > best || std::isnan(v)) {
              best = v;
              idx = ih * g.w + iw;
            }
          }
        const int64_t o = (p * g.out_h + oh) * g.out_w + ow;
        po[o] = best;
        pa[o] = static_cast<int32_t>(idx);
      }
  }
}

// Input gradient by gathering: for each input pixel i of each plane, add(acc, o, i) over the
// outputs o whose window covers it (covering), then pi = acc / divisor.
template <class Add>
void gather_backward_cpu(const Pool2dShape& g, float divisor, float* pi, Add add) {
  for (int64_t p = 0; p < g.planes; ++p)
    for (int64_t ih = 0; ih < g.h; ++ih)
      for (int64_t iw = 0; iw < g.w; ++iw) {
        int64_t oh_lo, oh_hi, ow_lo, ow_hi;
        covering(ih, g, g.out_h, oh_lo, oh_hi);
        covering(iw, g, g.out_w, ow_lo, ow_hi);
        float acc = 0.f;
        for (int64_t oh = oh_lo; oh <= oh_hi; ++oh)
          for (int64_t ow = ow_lo; ow <= ow_hi; ++ow) add(acc, (p * g.out_h + oh) * g.out_w + ow, ih * g.w + iw);
        pi[(p * g.h + ih) * g.w + iw] = acc / divisor;
      }
}

void max_backward_cpu(const Pool2dShape& g, const float* pg, const int32_t* pa, float* pi) {
  // only the output whose max this input was (pa: its index in the plane) passes its gradient on
  gather_backward_cpu(g, 1.f, pi, [&](float& acc, int64_t o, int64_t i) {
    if (pa[o] == i) acc += pg[o];
  });
}

void avg_forward_cpu(const Pool2dShape& g, const float* px, float* po) {
  const float divisor = static_cast<float>(g.kernel * g.kernel);
  for (int64_t p = 0; p < g.planes; ++p) {
    const float* plane = px + p * g.h * g.w;
    for (int64_t oh = 0; oh < g.out_h; ++oh)
      for (int64_t ow = 0; ow < g.out_w; ++ow) {
        float acc = 0.f;
        for (int64_t ih = oh * g.stride - g.padding; ih < oh * g.stride - g.padding + g.kernel; ++ih)
          for (int64_t iw = ow * g.stride - g.padding; iw < ow * g.stride - g.padding + g.kernel; ++iw)
            if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w) acc += plane[ih * g.w + iw];
        po[(p * g.out_h + oh) * g.out_w + ow] = acc / divisor;
      }
  }
}

void avg_backward_cpu(const Pool2dShape& g, const float* pg, float* pi) {
  gather_backward_cpu(g, static_cast<float>(g.kernel * g.kernel), pi,
                      [&](float& acc, int64_t o, int64_t) { acc += pg[o]; });
}

void global_forward_cpu(const float* px, float* po, int64_t planes, int64_t hw) {
  for (int64_t p = 0; p < planes; ++p) {
    double acc = 0.0;
    for (int64_t i = 0; i < hw; ++i) acc += px[p * hw + i];
    po[p] = static_cast<float>(acc / static_cast<double>(hw));
  }
}

void global_backward_cpu(const float* pg, float* pi, int64_t planes, int64_t hw) {
  const float inv = 1.f / static_cast<float>(hw);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t i = 0; i < hw; ++i) pi[p * hw + i] = pg[p] * inv;
}

}  // namespace

int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t padding) {
  return window_output_size(in, kernel, stride, padding);
}

MaxPool2dResult max_pool2d_forward(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  check_dtype("max_pool2d", x, DType::F32);
  const Pool2dShape g = geometry("max_pool2d", x.shape(), kernel, stride, padding);
  const Shape out_shape{x.dim(0), x.dim(1), g.out_h, g.out_w};
  MaxPool2dResult r{Tensor::empty(out_shape, DType::F32, x.device()), Tensor::empty(out_shape, DType::I32, x.device())};
  dispatch("max_pool2d", x.device(), max_forward_cpu, &CudaBackend::max_pool2d_forward_f32)(
      g, x.data<float>(), r.out.data<float>(), r.argmax.data<int32_t>());
  return r;
}

Tensor max_pool2d_backward(const Tensor& grad_out, const Tensor& argmax, const Shape& input_shape, int64_t kernel,
                           int64_t stride, int64_t padding) {
  const Pool2dShape g = geometry("max_pool2d_backward", input_shape, kernel, stride, padding);
  const Shape out_shape{input_shape[0], input_shape[1], g.out_h, g.out_w};
  check_grad_out("max_pool2d_backward", grad_out, out_shape);
  check_dtype("max_pool2d_backward", argmax, DType::I32);
  MDQ_CHECK(argmax.shape() == out_shape,
            "max_pool2d_backward: argmax " << argmax.describe() << " does not match grad_out " << grad_out.describe());
  check_same_device("max_pool2d_backward", grad_out, argmax);
  Tensor grad_in = Tensor::empty(input_shape, DType::F32, grad_out.device());
  dispatch("max_pool2d_backward", grad_out.device(), max_backward_cpu, &CudaBackend::max_pool2d_backward_f32)(
      g, grad_out.data<float>(), argmax.data<int32_t>(), grad_in.data<float>());
  return grad_in;
}

Tensor avg_pool2d_forward(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  check_dtype("avg_pool2d", x, DType::F32);
  const Pool2dShape g = geometry("avg_pool2d", x.shape(), kernel, stride, padding);
  Tensor out = Tensor::empty({x.dim(0), x.dim(1), g.out_h, g.out_w}, DType::F32, x.device());
  dispatch("avg_pool2d", x.device(), avg_forward_cpu, &CudaBackend::avg_pool2d_forward_f32)(g, x.data<float>(),
                                                                                           out.data<float>());
  return out;
}

Tensor avg_pool2d_backward(const Tensor& grad_out, const Shape& input_shape, int64_t kernel, int64_t stride,
                           int64_t padding) {
  const Pool2dShape g = geometry("avg_pool2d_backward", input_shape, kernel, stride, padding);
  check_grad_out("avg_pool2d_backward", grad_out, {input_shape[0], input_shape[1], g.out_h, g.out_w});
  Tensor grad_in = Tensor::empty(input_shape, DType::F32, grad_out.device());
  dispatch("avg_pool2d_backward", grad_out.device(), avg_backward_cpu, &CudaBackend::avg_pool2d_backward_f32)(
      g, grad_out.data<float>(), grad_in.data<float>());
  return grad_in;
}

Tensor global_avg_pool_forward(const Tensor& x) {
  check_dtype("global_avg_pool", x, DType::F32);
  check_ndim("global_avg_pool", x, 4);
  const int64_t planes = x.dim(0) * x.dim(1), hw = x.dim(2) * x.dim(3);
  MDQ_CHECK(hw > 0, "global_avg_pool: empty planes in " << x.describe());
  Tensor out = Tensor::empty({x.dim(0), x.dim(1)}, DType::F32, x.device());
  dispatch("global_avg_pool", x.device(), global_forward_cpu, &CudaBackend::global_avg_pool_forward_f32)(
      x.data<float>(), out.data<float>(), planes, hw);
  return out;
}

Tensor global_avg_pool_backward(const Tensor& grad_out, const Shape& input_shape) {
  MDQ_CHECK(input_shape.size() == 4,
            "global_avg_pool_backward: expected an NCHW input shape, got " << shape_str(input_shape));
  check_grad_out("global_avg_pool_backward", grad_out, {input_shape[0], input_shape[1]});
  const int64_t planes = input_shape[0] * input_shape[1], hw = input_shape[2] * input_shape[3];
  Tensor grad_in = Tensor::empty(input_shape, DType::F32, grad_out.device());
  dispatch("global_avg_pool_backward", grad_out.device(), global_backward_cpu,
           &CudaBackend::global_avg_pool_backward_f32)(grad_out.data<float>(), grad_in.data<float>(), planes, hw);
  return grad_in;
}

}  // namespace mdq::ops

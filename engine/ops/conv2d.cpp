// 2-D convolution: operand checks, the CPU reference, and one dispatch for the forward and one
// for the backward (CUDA tensors go to cuDNN, kernels/conv2d.cu).
//
// The CPU reference is direct loops, ordered so the innermost loop runs along an output row
// (contiguous in y, stride `stride` in x) over exactly the columns whose input tap is inside
// the image: no padding branches and no im2col buffer. Batch chunks run on all cores.
#include "engine/ops/conv2d.h"

#include <algorithm>
#include <string>
#include <vector>

#include "common/window.h"
#include "common/bf16.h"
#include "engine/backend/registry.h"
#include "engine/ops/layout.h"
#include "engine/parallel.h"
#include "engine/precision.h"
#include "kernels/nhwc_bf16.h"

namespace mdq::ops {
namespace {

using backend::CudaBackend;
using backend::dispatch;
using backend::cuda_impl;
using Geometry = kernels::Conv2dGeometry;

// Batch chunks for the CPU passes: fixed, so results do not depend on the machine's core count.
constexpr int64_t kBatchChunks = 8;

// Checks that x, w and p fit together; x_name and w_name say which operands these are.
Geometry geometry(const char* op, const Shape& xs, const std::string& x_name, const Shape& ws,
                  const std::string& w_name, const Conv2dParams& p) {
  MDQ_CHECK(xs.size() == 4, op << ": input " << x_name << " must be 4-D [N, C, H, W]");
  MDQ_CHECK(ws.size() == 4, op << ": weight " << w_name << " must be 4-D [O, C/groups, KH, KW]");
  MDQ_CHECK(p.stride >= 1 && p.padding >= 0 && p.groups >= 1,
            op << ": needs stride >= 1, padding >= 0, groups >= 1; got stride " << p.stride << ", padding "
               << p.padding << ", groups " << p.groups);
  Geometry g{};
  g.N = xs[0], g.C = xs[1], g.H = xs[2], g.W = xs[3];
  g.O = ws[0], g.Cg = ws[1], g.KH = ws[2], g.KW = ws[3];
  g.groups = p.groups, g.stride = p.stride, g.pad = p.padding;
  MDQ_CHECK(g.C % g.groups == 0, op << ": groups " << g.groups << " does not divide the " << g.C
                                    << " input channels of " << x_name);
  MDQ_CHECK(g.O % g.groups == 0, op << ": groups " << g.groups << " does not divide the " << g.O
                                    << " output channels of weight " << w_name);
  MDQ_CHECK(g.Cg == g.C / g.groups, op << ": channel mismatch: input " << x_name << " has " << g.C
                                       << " channels, so with groups " << g.groups << " weight " << w_name
                                       << " needs dim 1 = " << g.C / g.groups << ", not " << g.Cg);
  MDQ_CHECK(g.KH >= 1 && g.KW >= 1, op << ": empty kernel in weight " << w_name);
  MDQ_CHECK(g.H + 2 * g.pad >= g.KH && g.W + 2 * g.pad >= g.KW,
            op << ": kernel of weight " << w_name << " is larger than the padded input " << x_name
               << " (padding " << g.pad << ")");
  g.OH = window_output_size(g.H, g.KH, g.stride, g.pad);
  g.OW = window_output_size(g.W, g.KW, g.stride, g.pad);
  g.Og = g.O / g.groups;
  return g;
}

void check_grad_out(const char* op, const Tensor& dy, const Geometry& g) {
  const Shape expected{g.N, g.O, g.OH, g.OW};
  MDQ_CHECK(dy.shape() == expected,
            op << ": grad_out " << dy.describe() << " does not match the forward output shape " << shape_str(expected));
}

// Output positions o in [lo, hi) whose input tap o*stride - pad + k lies in [0, in).
void valid_range(int64_t k, int64_t pad, int64_t stride, int64_t in, int64_t out, int64_t& lo, int64_t& hi) {
  const int64_t first = pad - k;  // need o*stride >= first
  const int64_t last = in + pad - k;  // need o*stride < last
  lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  hi = last <= 0 ? 0 : std::min(out, (last + stride - 1) / stride);
  lo = std::min(lo, hi);
}

// Calls body(n, o, c_in, kh, kw, w_index, oh_lo, oh_hi, ow_lo, ow_hi) for every weight tap;
// c_in is the absolute input channel, n runs over [n_begin, n_end). All three CPU passes share
// this walk, each over batch chunks in parallel (engine/parallel.h).
template <class Body>
void for_each_tap(const Geometry& g, int64_t n_begin, int64_t n_end, Body body) {
  for (int64_t n = n_begin; n < n_end; ++n)
    for (int64_t o = 0; o < g.O; ++o) {
      const int64_t c0 = (o / g.Og) * g.Cg;
      for (int64_t c = 0; c < g.Cg; ++c)
        for (int64_t kh = 0; kh < g.KH; ++kh) {
          int64_t oh_lo, oh_hi;
          valid_range(kh, g.pad, g.stride, g.H, g.OH, oh_lo, oh_hi);
          for (int64_t kw = 0; kw < g.KW; ++kw) {
            int64_t ow_lo, ow_hi;
            valid_range(kw, g.pad, g.stride, g.W, g.OW, ow_lo, ow_hi);
            body(n, o, c0 + c, kh, kw, ((o * g.Cg + c) * g.KH + kh) * g.KW + kw, oh_lo, oh_hi, ow_lo, ow_hi);
          }
        }
    }
}

// The CPU passes compute in fp32 at every precision (the Precision argument is the cuDNN path's).
void cpu_forward(const Geometry& g, Precision, const float* x, const float* w, const float* bias, float* y) {
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t o = 0; o < g.O; ++o) std::fill_n(y + (n * g.O + o) * g.OH * g.OW, g.OH * g.OW, bias ? bias[o] : 0.f);
  const int64_t s = g.stride;
  parallel_chunks(g.N, kBatchChunks, [&](int64_t, int64_t n0, int64_t n1) {
  for_each_tap(g, n0, n1, [&](int64_t n, int64_t o, int64_t ci, int64_t kh, int64_t kw, int64_t wi, int64_t oh_lo,
                      int64_t oh_hi, int64_t ow_lo, int64_t ow_hi) {
    const float wv = w[wi];
    const float* xc = x + (n * g.C + ci) * g.H * g.W;
    float* yo = y + (n * g.O + o) * g.OH * g.OW;
    for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
      const int64_t xi = (oh * s - g.pad + kh) * g.W - g.pad + kw;  // xi + ow*s is inside the row
      float* yrow = yo + oh * g.OW;
      if (s == 1)  // contiguous: lets the compiler vectorize the common case
        for (int64_t ow = ow_lo; ow < ow_hi; ++ow) yrow[ow] += wv * xc[xi + ow];
      else
        for (int64_t ow = ow_lo; ow < ow_hi; ++ow) yrow[ow] += wv * xc[xi + ow * s];
    }
  });
  });
}

void cpu_backward_input(const Geometry& g, Precision, const float* dy, const float* w, float* dx) {
  std::fill_n(dx, g.N * g.C * g.H * g.W, 0.f);
  const int64_t s = g.stride;
  parallel_chunks(g.N, kBatchChunks, [&](int64_t, int64_t n0, int64_t n1) {
  for_each_tap(g, n0, n1, [&](int64_t n, int64_t o, int64_t ci, int64_t kh, int64_t kw, int64_t wi, int64_t oh_lo,
                      int64_t oh_hi, int64_t ow_lo, int64_t ow_hi) {
    const float wv = w[wi];
    float* dxc = dx + (n * g.C + ci) * g.H * g.W;
    const float* dyo = dy + (n * g.O + o) * g.OH * g.OW;
    for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
      const int64_t xi = (oh * s - g.pad + kh) * g.W - g.pad + kw;
      const float* dyrow = dyo + oh * g.OW;
      if (s == 1)
        for (int64_t ow = ow_lo; ow < ow_hi; ++ow) dxc[xi + ow] += wv * dyrow[ow];
      else
        for (int64_t ow = ow_lo; ow < ow_hi; ++ow) dxc[xi + ow * s] += wv * dyrow[ow];
    }
  });
  });
}

void cpu_backward_weight(const Geometry& g, Precision, const float* dy, const float* x, float* dw) {
  // Each batch chunk sums into its own partial; the partials are added in chunk order, so the
  // result does not depend on how many threads ran them.
  const int64_t wn = g.O * g.Cg * g.KH * g.KW;
  std::vector<float> partial(static_cast<size_t>(std::min<int64_t>(kBatchChunks, g.N) * wn), 0.f);
  const int64_t s = g.stride;
  const int64_t used = parallel_chunks(g.N, kBatchChunks, [&](int64_t chunk, int64_t n0, int64_t n1) {
    float* dwc = partial.data() + chunk * wn;
    for_each_tap(g, n0, n1, [&](int64_t n, int64_t o, int64_t ci, int64_t kh, int64_t kw, int64_t wi, int64_t oh_lo,
                                int64_t oh_hi, int64_t ow_lo, int64_t ow_hi) {
      const float* xc = x + (n * g.C + ci) * g.H * g.W;
      const float* dyo = dy + (n * g.O + o) * g.OH * g.OW;
      float acc = 0.f;
      for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
        const int64_t xi = (oh * s - g.pad + kh) * g.W - g.pad + kw;
        const float* dyrow = dyo + oh * g.OW;
        for (int64_t ow = ow_lo; ow < ow_hi; ++ow) acc += dyrow[ow] * xc[xi + ow * s];
      }
      dwc[wi] += acc;
    });
  });
  std::fill_n(dw, wn, 0.f);
  for (int64_t c = 0; c < used; ++c)
    for (int64_t i = 0; i < wn; ++i) dw[i] += partial[static_cast<size_t>(c * wn + i)];
}

// Either output may be null, as on the GPU (kernels/conv2d.h). dx_add sums a fresh dx into the
// given one, so the result is the same bit for bit as computing dx alone and adding it after.
void cpu_backward(const Geometry& g, Precision prec, const float* dy, const float* x, const float* w, float* dx,
                  bool dx_add, float* dw) {
  if (dx && dx_add) {
    std::vector<float> fresh(static_cast<size_t>(g.N * g.C * g.H * g.W));
    cpu_backward_input(g, prec, dy, w, fresh.data());
    for (size_t i = 0; i < fresh.size(); ++i) dx[i] += fresh[i];
  } else if (dx) {
    cpu_backward_input(g, prec, dy, w, dx);
  }
  if (dw) cpu_backward_weight(g, prec, dy, x, dw);
}

void cpu_backward_bias(int64_t N, int64_t O, int64_t OH, int64_t OW, const float* dy, float* db) {
  const int64_t HW = OH * OW;
  for (int64_t o = 0; o < O; ++o) {
    double acc = 0.0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) acc += dy[(n * O + o) * HW + i];
    db[o] = static_cast<float>(acc);
  }
}

// The NHWC bf16 path's CPU reference (kernels/conv2d.h, conv2d_*_nhwc_bf16): the f32 loops above
// on the activations widened to NCHW f32 and the weights rounded to bf16 as the GPU rounds them,
// each bf16 result rounded once.
std::vector<float> nchw_of(const uint16_t* x, int64_t N, int64_t C, int64_t HW) {
  std::vector<float> out(static_cast<size_t>(N * C * HW));
  kernels::reference::nhwc_bf16_to_nchw_f32(x, out.data(), N, HW, static_cast<int>(C));
  return out;
}
void round_to_nhwc(const std::vector<float>& nchw, uint16_t* out, int64_t N, int64_t C, int64_t HW) {
  kernels::reference::nchw_f32_to_nhwc<uint16_t>(nchw.data(), out, N, static_cast<int>(C), HW);
}
std::vector<float> bf16_weights(const Geometry& g, const float* w) {
  std::vector<float> out(static_cast<size_t>(g.O * g.Cg * g.KH * g.KW));
  for (size_t i = 0; i < out.size(); ++i) out[i] = bf16_to_float(float_to_bf16(w[i]));
  return out;
}

// The CPU makes no bf16 filter (conv2d_filter answers undefined there): `filter` is always null.
void cpu_forward_nhwc(const Geometry& g, const uint16_t* x, const float* w, const uint16_t* /*filter*/,
                      const float* bias, uint16_t* y) {
  const std::vector<float> x32 = nchw_of(x, g.N, g.C, g.H * g.W), w16 = bf16_weights(g, w);
  std::vector<float> y32(static_cast<size_t>(g.N * g.O * g.OH * g.OW));
  cpu_forward(g, Precision::FP32, x32.data(), w16.data(), nullptr, y32.data());
  if (bias)  // the GPU rounds the convolution, then the sum with the bias
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t o = 0; o < g.O; ++o)
        for (int64_t i = 0; i < g.OH * g.OW; ++i) {
          float& v = y32[static_cast<size_t>((n * g.O + o) * g.OH * g.OW + i)];
          v = bf16_to_float(float_to_bf16(v)) + bias[o];
        }
  round_to_nhwc(y32, y, g.N, g.O, g.OH * g.OW);
}

void cpu_backward_nhwc(const Geometry& g, const uint16_t* dy, const uint16_t* x, const float* w,
                       const uint16_t* /*filter*/, uint16_t* dx, float* dw) {
  const std::vector<float> dy32 = nchw_of(dy, g.N, g.O, g.OH * g.OW), w16 = bf16_weights(g, w);
  std::vector<float> x32, dx32;
  if (dw) x32 = nchw_of(x, g.N, g.C, g.H * g.W);
  if (dx) dx32.resize(static_cast<size_t>(g.N * g.C * g.H * g.W));
  cpu_backward(g, Precision::FP32, dy32.data(), dw ? x32.data() : nullptr, w16.data(), dx ? dx32.data() : nullptr,
               false, dw);
  if (dx) round_to_nhwc(dx32, dx, g.N, g.C, g.H * g.W);
}

}  // namespace

Shape conv2d_output_shape(const Shape& x_shape, const Shape& w_shape, const Conv2dParams& p) {
  Geometry g = geometry("conv2d", x_shape, shape_str(x_shape), w_shape, shape_str(w_shape), p);
  return {g.N, g.O, g.OH, g.OW};
}

Tensor conv2d_filter(const Tensor& x, const Tensor& w, const Conv2dParams& p) {
  const char* op = "conv2d_filter";
  if (!is_nhwc_bf16(x) || x.device() != Device::CUDA) return Tensor();
  check_dtype(op, w, DType::F32);
  check_same_device(op, x, w);
  const Geometry g = geometry(op, nchw_shape(x), x.describe(), w.shape(), w.describe(), p);
  const int64_t n = cuda_impl(op, &CudaBackend::conv2d_filter_elems_nhwc_bf16)(g);
  if (n == 0) return Tensor();
  Tensor filter = Tensor::empty({n}, DType::BF16, x.device());
  cuda_impl(op, &CudaBackend::conv2d_filter_nhwc_bf16)(g, w.data<float>(), filter.data<uint16_t>());
  return filter;
}

namespace {
// The filter's pointer for the kernels, after checking it is one conv2d_filter made for g.
const uint16_t* filter_of(const char* op, const Tensor& filter, const Geometry& g) {
  if (!filter.defined()) return nullptr;
  MDQ_CHECK(filter.dtype() == DType::BF16 && filter.device() == Device::CUDA &&
                filter.numel() == cuda_impl(op, &CudaBackend::conv2d_filter_elems_nhwc_bf16)(g),
            op << ": filter " << filter.describe() << " is not conv2d_filter's for this convolution");
  return filter.data<uint16_t>();
}
}  // namespace

Tensor conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p,
                      const Tensor& filter) {
  const char* op = "conv2d_forward";
  const bool nhwc = is_nhwc_bf16(x);
  if (!nhwc) check_dtype(op, x, DType::F32);
  check_dtype(op, w, DType::F32);
  check_same_device(op, x, w);
  Geometry g = geometry(op, nchw_shape(x), x.describe(), w.shape(), w.describe(), p);
  if (bias.defined()) {
    check_dtype(op, bias, DType::F32);
    check_same_device(op, x, bias);
    MDQ_CHECK(bias.shape() == Shape{g.O},
              op << ": bias " << bias.describe() << " must be [" << g.O << "], one per output channel of " << w.describe());
  }
  if (nhwc) {
    Tensor y = Tensor::empty({g.N, g.OH, g.OW, g.O}, DType::BF16, x.device());
    dispatch(op, x.device(), cpu_forward_nhwc, &CudaBackend::conv2d_forward_nhwc_bf16)(
        g, x.data<uint16_t>(), w.data<float>(), filter_of(op, filter, g), bias.defined() ? bias.data<float>() : nullptr,
        y.data<uint16_t>());
    return y;
  }
  Tensor y = Tensor::empty({g.N, g.O, g.OH, g.OW}, DType::F32, x.device());
  dispatch(op, x.device(), cpu_forward, &CudaBackend::conv2d_forward_f32)(
      g, precision(), x.data<float>(), w.data<float>(), bias.defined() ? bias.data<float>() : nullptr, y.data<float>());
  return y;
}

Conv2dGrads conv2d_backward(const Tensor& grad_out, const Tensor& x, const Tensor& w, const Conv2dParams& p,
                            bool want_input, bool want_weight, Tensor* input_grad_sum, const Tensor& filter) {
  const char* op = "conv2d_backward";
  if (is_nhwc_bf16(grad_out))
    return conv2d_backward_nhwc(grad_out, x, w, p, want_input, want_weight, input_grad_sum, filter);
  MDQ_CHECK(!filter.defined(), op << ": a bf16 filter goes with NHWC bf16 activations only");
  check_dtype(op, grad_out, DType::F32);
  check_dtype(op, x, DType::F32);
  check_dtype(op, w, DType::F32);
  check_same_device(op, grad_out, x);
  check_same_device(op, grad_out, w);
  Geometry g = geometry(op, x.shape(), x.describe(), w.shape(), w.describe(), p);
  check_grad_out(op, grad_out, g);
  const bool add = want_input && input_grad_sum;
  if (add) {
    check_dtype(op, *input_grad_sum, DType::F32);
    check_same_device(op, *input_grad_sum, x);
    MDQ_CHECK(input_grad_sum->shape() == x.shape(), op << ": the gradient to add into, " << input_grad_sum->describe()
                                                       << ", does not have input " << x.describe() << "'s shape");
  }
  Conv2dGrads out;
  if (want_input && !add) out.input = Tensor::empty(x.shape(), DType::F32, x.device());
  if (want_weight) out.weight = Tensor::empty(w.shape(), DType::F32, x.device());
  if (!want_input && !want_weight) return out;
  float* dx = add ? input_grad_sum->data<float>() : want_input ? out.input.data<float>() : nullptr;
  dispatch(op, x.device(), cpu_backward, &CudaBackend::conv2d_backward_f32)(
      g, precision(), grad_out.data<float>(), x.data<float>(), w.data<float>(), dx, add,
      want_weight ? out.weight.data<float>() : nullptr);
  return out;
}

Conv2dGrads conv2d_backward_nhwc(const Tensor& grad_out, const Tensor& x, const Tensor& w, const Conv2dParams& p,
                                 bool want_input, bool want_weight, const Tensor* input_grad_sum,
                                 const Tensor& filter) {
  const char* op = "conv2d_backward (NHWC bf16)";
  MDQ_CHECK(is_nhwc_bf16(x), op << ": grad_out " << grad_out.describe() << " is NHWC bf16, so the input must be too, got "
                                << (x.defined() ? x.describe() : "none"));
  MDQ_CHECK(!input_grad_sum, op << ": sums no gradient into an existing one (autograd adds it)");
  check_dtype(op, w, DType::F32);
  check_same_device(op, grad_out, x);
  check_same_device(op, grad_out, w);
  Geometry g = geometry(op, nchw_shape(x), x.describe(), w.shape(), w.describe(), p);
  MDQ_CHECK(grad_out.shape() == (Shape{g.N, g.OH, g.OW, g.O}),
            op << ": grad_out " << grad_out.describe() << " does not match the forward output [" << g.N << ", " << g.OH
               << ", " << g.OW << ", " << g.O << "] (NHWC)");
  Conv2dGrads out;
  if (want_input) out.input = Tensor::empty(x.shape(), DType::BF16, x.device());
  if (want_weight) out.weight = Tensor::empty(w.shape(), DType::F32, x.device());
  if (!want_input && !want_weight) return out;
  dispatch(op, x.device(), cpu_backward_nhwc, &CudaBackend::conv2d_backward_nhwc_bf16)(
      g, grad_out.data<uint16_t>(), x.data<uint16_t>(), w.data<float>(), filter_of(op, filter, g),
      want_input ? out.input.data<uint16_t>() : nullptr, want_weight ? out.weight.data<float>() : nullptr);
  return out;
}

Tensor conv2d_backward_input(const Tensor& grad_out, const Tensor& w, const Shape& x_shape, const Conv2dParams& p) {
  const char* op = "conv2d_backward_input";
  check_dtype(op, grad_out, DType::F32);
  check_dtype(op, w, DType::F32);
  check_same_device(op, grad_out, w);
  Geometry g = geometry(op, x_shape, "of shape " + shape_str(x_shape), w.shape(), w.describe(), p);
  check_grad_out(op, grad_out, g);
  Tensor dx = Tensor::empty(x_shape, DType::F32, grad_out.device());
  dispatch(op, grad_out.device(), cpu_backward, &CudaBackend::conv2d_backward_f32)(
      g, precision(), grad_out.data<float>(), nullptr, w.data<float>(), dx.data<float>(), false, nullptr);
  return dx;
}

Tensor conv2d_backward_weight(const Tensor& grad_out, const Tensor& x, const Shape& w_shape, const Conv2dParams& p) {
  const char* op = "conv2d_backward_weight";
  check_dtype(op, grad_out, DType::F32);
  check_dtype(op, x, DType::F32);
  check_same_device(op, grad_out, x);
  Geometry g = geometry(op, x.shape(), x.describe(), w_shape, "of shape " + shape_str(w_shape), p);
  check_grad_out(op, grad_out, g);
  Tensor dw = Tensor::empty(w_shape, DType::F32, x.device());
  dispatch(op, x.device(), cpu_backward, &CudaBackend::conv2d_backward_f32)(
      g, precision(), grad_out.data<float>(), x.data<float>(), nullptr, nullptr, false, dw.data<float>());
  return dw;
}

Tensor conv2d_backward_bias(const Tensor& grad_out) {
  if (is_nhwc_bf16(grad_out)) return conv2d_backward_bias(to_nchw_f32(grad_out));
  const char* op = "conv2d_backward_bias";
  check_dtype(op, grad_out, DType::F32);
  check_ndim(op, grad_out, 4);
  Tensor db = Tensor::empty({grad_out.dim(1)}, DType::F32, grad_out.device());
  dispatch(op, grad_out.device(), cpu_backward_bias, &CudaBackend::conv2d_backward_bias_f32)(
      grad_out.dim(0), grad_out.dim(1), grad_out.dim(2), grad_out.dim(3), grad_out.data<float>(), db.data<float>());
  return db;
}

namespace cudnn_conv {
Choices choices(const Shape& x_shape, const Shape& w_shape, const Conv2dParams& p) {
  const Geometry g = geometry("conv2d", x_shape, shape_str(x_shape), w_shape, shape_str(w_shape), p);
  return backend::cuda_impl("conv2d (cuDNN choices)", &CudaBackend::cudnn_conv2d_choices)(g, precision());
}
}  // namespace cudnn_conv

}  // namespace mdq::ops

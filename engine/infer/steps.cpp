// Running the steps of an inference plan (engine/infer/steps.h).
#include "engine/infer/steps.h"

#include "engine/ops/activation.h"
#include "engine/ops/batchnorm.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/matmul.h"
#include "engine/ops/pooling.h"
#include "engine/packed/binary_act.h"
#include "engine/packed/bitpack.h"
#include "engine/packed/nhwc.h"
#include "engine/packed/stem_conv.h"

namespace mdq::infer {
namespace {

Tensor rows(const Tensor& x) { return x.ndim() == 2 ? x : x.reshape({x.dim(0), x.numel() / x.dim(0)}); }

// Dense NHWC -> [N][C·H·W] in NCHW order (a 1x1 map is already in that order).
Tensor flatten_nhwc(const Tensor& x) {
  if (x.ndim() == 2 || x.dim(1) * x.dim(2) == 1) return rows(x);
  return rows(packed::to_nchw(x));
}

}  // namespace

void run_all(const Steps& steps, Activation& a) {
  for (const auto& s : steps) s->run(a);
}

void count_all(const Steps& steps, Census& c) {
  for (const auto& s : steps) s->count(c);
}

int64_t bytes(const Tensor& t) { return t.defined() ? static_cast<int64_t>(t.nbytes()) : 0; }
int64_t bytes(const packed::PackedWeights& w) { return bytes(w.sign) + bytes(w.nonzero) + bytes(w.tap_popc); }

void Relayout::run(Activation& a) const {
  Tensor& x = a.x;
  if (from == Form::Bits) {
    x = to == Form::Float ? packed::unpack_signs_nchw(x, a.channels) : packed::unpack_signs(x, a.channels);
    if (a.vector) x = rows(x);
    if (to == Form::Dense && dense == DType::BF16) x = packed::to_bf16(x);  // ±1: exact
  } else if (from == Form::Float && to == Form::Dense) {
    if (x.ndim() == 4) x = packed::to_nhwc(x, dense);
    else if (dense == DType::BF16) x = packed::to_bf16(x);
  } else {
    MDQ_CHECK(from == Form::Dense && to == Form::Float,
              "Relayout: no layout change from form " << static_cast<int>(from) << " to " << static_cast<int>(to));
    if (x.ndim() == 4) x = packed::to_nchw(x);
    if (x.dtype() == DType::BF16) x = packed::to_f32(x);
  }
}

void Binarize::run(Activation& a) const {
  const Tensor& x = a.x;
  a.vector = x.ndim() == 2;
  a.channels = form == Form::Float ? x.dim(1) : x.dim(-1);
  const Tensor bits = form == Form::Float ? packed::pack_signs_nchw(x) : packed::pack_signs(x);
  a.x = a.vector ? bits.reshape({x.dim(0), 1, 1, bits.dim(-1)}) : bits;
}

void FloatConv::run(Activation& a) const { a.x = ops::conv2d_forward(a.x, weight, bias, params); }

void FloatConv::count(Census& c) const {
  ++c.float_convs;
  c.bytes += bytes(weight) + bytes(bias);
}

bool Bf16Stem::direct() const {
  return direct_weight.defined() && packed::stem_direct_enabled() &&
         (signs ? packed::stem_signs_fit(direct_weight, params) : packed::stem_conv_fits(direct_weight, params));
}

bool Bf16Stem::on_tensor_cores() const {
  return packed::on_tensor_cores(arithmetic) && direct() && packed::stem_tensor_cores_available(direct_weight.device());
}

void Bf16Stem::run(Activation& a) const {
  if (signs) {  // what Binarize sets for a map
    a.channels = weight.dim(0);
    a.vector = false;
  }
  if (direct()) {
    a.x = signs ? packed::stem_conv_signs(a.x, direct_weight, scale, shift, params, relu, arithmetic)
                : packed::stem_conv_nhwc(a.x, direct_weight, scale, shift, params, relu, dense, arithmetic);
    return;
  }
  const Tensor x = packed::to_nhwc_bf16_padded(a.x, weight.dim(1));
  const Tensor y = ops::conv2d_forward(x, weight, Tensor(), params);
  const Tensor z = packed::affine_nhwc(y, scale, shift, relu);
  if (signs) a.x = packed::pack_signs(z);  // widening to f32 first would keep every sign
  else a.x = dense == DType::BF16 ? z : packed::to_f32(z);  // widening bf16 is exact
}

void Bf16Stem::count(Census& c) const {
  ++c.float_convs;
  c.stem_signs += signs;
  c.stem_direct += direct();
  c.stem_tensor_cores += on_tensor_cores();
  c.bytes += bytes(weight) + bytes(direct_weight) + bytes(scale) + bytes(shift);
}

void FloatLinear::run(Activation& a) const {
  a.x = ops::matmul(rows(a.x), weight, false, true);
  if (bias.defined()) a.x = ops::add_row_vector(a.x, bias);
}

void FloatLinear::count(Census& c) const {
  ++c.float_linears;
  c.bytes += bytes(weight) + bytes(bias);
}

void FloatBatchNorm::run(Activation& a) const {
  Tensor m = mean, v = var;  // eval mode reads them; the op's signature takes them by reference
  a.x = ops::batch_norm_forward(a.x, weight, bias, m, v, false, 0.1f, eps).out;
}

void FloatBatchNorm::count(Census& c) const { c.bytes += bytes(weight) + bytes(bias) + bytes(mean) + bytes(var); }

void Relu::run(Activation& a) const {
  if (form == Form::Dense) {
    MDQ_CHECK(!six, "Relu: ReLU6 runs on Float activations");
    a.x = packed::add_nhwc(a.x, Tensor(), true);
  } else {
    a.x = six ? ops::relu6_forward(a.x) : ops::relu_forward(a.x);
  }
}

void MaxPool::run(Activation& a) const {
  switch (form) {
    case Form::Float: a.x = ops::max_pool2d_forward(a.x, kernel, stride, padding).out; break;
    case Form::Dense: a.x = packed::max_pool_nhwc(a.x, kernel, stride, padding); break;
    case Form::Bits: a.x = packed::max_pool2d_bits(a.x, kernel, stride, padding); break;
  }
}

void GlobalAvgPool::run(Activation& a) const {
  if (form == Form::Bits) {  // -> Float [N][C]; a vector's one pixel averages to its own ±1
    a.x = packed::global_avg_pool_bits(a.x, a.channels);
    a.vector = false;
    return;
  }
  if (a.x.ndim() == 2) return;
  a.x = form == Form::Dense ? packed::global_avg_pool_nhwc(a.x) : ops::global_avg_pool_forward(a.x);
}

void Flatten::run(Activation& a) const { a.x = form == Form::Dense ? flatten_nhwc(a.x) : rows(a.x); }

void W1A16Layer::run(Activation& a) const {
  const Tensor x = linear ? flatten_nhwc(a.x) : a.x;
  MDQ_CHECK(x.ndim() == (linear ? 2 : 4), "W1A16Layer: a " << (linear ? "linear layer" : "convolution")
                                                           << " got activations " << x.describe());
  const Tensor in = x.dtype() == DType::F32 ? packed::split_bf16(x) : x;
  a.x = linear ? packed::w1a16_linear(in, w, out) : packed::w1a16_conv2d(in, w, g, out);
}

void W1A16Layer::count(Census& c) const {
  ++c.w1a16[linear][w.ternary()];
  c.bytes += bytes(w) + bytes(out.scale) + bytes(out.shift);
}

void W1A1Layer::run(Activation& a) const {
  Tensor x = a.x;
  const int64_t N = x.dim(0);
  if (linear) {
    const int64_t taps = x.dim(1) * x.dim(2);
    MDQ_CHECK(taps == w.kernel_h(),
              name << " takes a map of " << w.kernel_h() << " pixels, got bits " << x.describe());
    x = x.reshape({N, taps, 1, x.dim(3)});
  }
  Tensor y = packed::binary_conv2d(x, w, g, out);
  if (out.mode == packed::BinaryOutputMode::SignPack) {
    a.channels = w.out_channels();
    a.vector = linear;
  } else if (linear) {
    y = y.reshape({N, w.out_channels()});
  }
  a.x = y;
}

void W1A1Layer::count(Census& c) const {
  ++(linear ? c.w1a1_linears : c.w1a1_convs);
  c.bytes += bytes(w) + bytes(out.scale) + bytes(out.shift) + bytes(out.thresholds);
}

void ResidualSum::run(Activation& a) const {
  Activation b = a, s = a;
  run_all(body, b);
  run_all(shortcut, s);
  if (form == Form::Dense) {
    a.x = packed::add_nhwc(b.x, s.x, relu);
  } else {
    const Tensor y = ops::add(b.x, s.x);
    a.x = relu ? ops::relu_forward(y) : y;
  }
}

void ResidualSum::count(Census& c) const {
  count_all(body, c);
  count_all(shortcut, c);
}

void BinaryBlock::run(Activation& a) const {
  Activation h = a;
  first.run(h);
  if (shortcut) {
    a.x = packed::binary_conv2d_shortcut_signs(h.x, second.w, second.g, second.out.scale, second.out.shift, a.x,
                                               {shortcut->w, shortcut->g, shortcut->out.scale, shortcut->out.shift});
  } else {
    a.x = packed::binary_conv2d_skip_signs(h.x, second.w, second.g, second.out.scale, second.out.shift, a.x,
                                           skip_thresholds);
  }
  a.channels = second.w.out_channels();
}

void BinaryBlock::count(Census& c) const {
  first.count(c);
  second.count(c);
  if (shortcut) shortcut->count(c);
  c.bytes += bytes(skip_thresholds);
  ++c.w1a1_blocks;
}

}  // namespace mdq::infer

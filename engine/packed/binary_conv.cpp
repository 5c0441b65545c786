// W1A1 convolutions and linear layers (DESIGN.md E12): argument checks, the CPU reference (E12's
// popc formula per tap, straight from the packed words), the SignPack thresholds, and the
// CUDA path through the registry (kernels/binary_conv.cu).
#include <algorithm>
#include <vector>

#include "engine/backend/registry.h"
#include "engine/packed/bitpack.h"
#include "engine/packed/conv_common.h"
#include "engine/packed/packed_conv.h"

namespace mdq::packed {
namespace {

using backend::CudaBackend;
using backend::cuda_impl;

// The kernel's arguments for x_bits (CUDA) and w (output shape from check_w1a1) in epilogue
// `mode`, with the input's pixel popcounts computed into pixel_popc when the kernel that will run
// reads them (the caller keeps it until the kernel is queued).
kernels::BinaryConvArgs cuda_args(const char* op, const Tensor& x, const PackedWeights& w, const ConvGeometry& g,
                                  const Shape& out_shape, const Tensor& scale, const Tensor& shift,
                                  kernels::BinaryEpilogue mode, Tensor& pixel_popc) {
  const int64_t N = x.dim(0);
  MDQ_CHECK(N * out_shape[1] * out_shape[2] < (int64_t{1} << 31) && x.numel() < (int64_t{1} << 31),
            op << ": input " << x.describe() << " too large for 32-bit row indexing");
  kernels::BinaryConvArgs a;
  a.x = x.data<uint32_t>();
  a.w = w.sign.data<uint32_t>();
  a.tap_popc = w.tap_popc.data<int32_t>();
  a.N = static_cast<int>(N); a.H = static_cast<int>(x.dim(1)); a.W = static_cast<int>(x.dim(2));
  a.C = static_cast<int>(w.channels); a.O = static_cast<int>(w.out_channels());
  a.KH = static_cast<int>(w.kernel_h()); a.KW = static_cast<int>(w.kernel_w());
  a.stride = static_cast<int>(g.stride); a.pad = static_cast<int>(g.padding);
  a.scale = scale.defined() ? scale.data<float>() : nullptr;
  a.shift = shift.defined() ? shift.data<float>() : nullptr;
  a.mode = mode;
  if (cuda_impl(op, &CudaBackend::binary_conv_reads_pixel_popc)(a)) {
    pixel_popc = Tensor::empty({x.numel() / x.dim(3)}, DType::I32, Device::CUDA);
    cuda_impl(op, &CudaBackend::row_popc)(x.data<uint32_t>(), pixel_popc.data<int32_t>(), pixel_popc.numel(),
                                          static_cast<int>(x.dim(3)));
    a.pixel_popc = pixel_popc.data<int32_t>();
  }
  return a;
}

kernels::BinaryEpilogue epilogue(BinaryOutputMode mode) {
  switch (mode) {
    case BinaryOutputMode::Int32: return kernels::BinaryEpilogue::Int32;
    case BinaryOutputMode::Int16: return kernels::BinaryEpilogue::Int16;
    case BinaryOutputMode::Affine: return kernels::BinaryEpilogue::Affine;
    case BinaryOutputMode::AffineRelu: return kernels::BinaryEpilogue::AffineRelu;
    case BinaryOutputMode::SignPack: return kernels::BinaryEpilogue::SignPack;
  }
  MDQ_FAIL("binary_conv2d: unknown output mode " << static_cast<int>(mode));
}

// The CPU W1A1 reference: E12 with the mask, tap by tap, straight from the packed words.
std::vector<int32_t> binary_conv_cpu(const Tensor& x, const PackedWeights& w, const ConvGeometry& g, int64_t OH,
                                     int64_t OW) {
  const int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2), Cw = x.dim(3), C = w.channels;
  const int64_t O = w.out_channels(), KH = w.kernel_h(), KW = w.kernel_w();
  const uint32_t* xb = x.data<uint32_t>();
  const uint32_t* wb = w.sign.data<uint32_t>();
  std::vector<int32_t> d(static_cast<size_t>(N * OH * OW * O));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow)
        for (int64_t o = 0; o < O; ++o) {
          int aw = 0, a = 0, ww = 0, valid = 0;  // popc(A&W&M), popc(A&M), popc(W&M), popc(M)
          for (int64_t kh = 0; kh < KH; ++kh)
            for (int64_t kw = 0; kw < KW; ++kw) {
              const int64_t ih = oh * g.stride - g.padding + kh, iw = ow * g.stride - g.padding + kw;
              if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
              const uint32_t* xp = xb + ((n * H + ih) * W + iw) * Cw;
              const uint32_t* wp = wb + ((o * KH + kh) * KW + kw) * Cw;
              for (int64_t k = 0; k < Cw; ++k) {
                aw += detail::popc(xp[k] & wp[k]);
                a += detail::popc(xp[k]);
                ww += detail::popc(wp[k]);
              }
              valid += static_cast<int>(C);
            }
          d[static_cast<size_t>(((n * OH + oh) * OW + ow) * O + o)] = 4 * aw - 2 * a - 2 * ww + valid;
        }
  return d;
}

// The checks every W1A1 entry point makes: packed binary input and weights that fit each other,
// at most 31 taps (the kernel's tap mask), per-channel scale/shift of the right size and device.
// Returns the output shape [N][OH][OW][O].
Shape check_w1a1(const char* op, const Tensor& x, const PackedWeights& w, const ConvGeometry& g, const Tensor& scale,
                 const Tensor& shift) {
  check_dtype(op, x, DType::U32);
  check_ndim(op, x, 4);
  detail::check_geometry(op, x, w, g);
  MDQ_CHECK(!w.ternary(), op << ": W1A1 takes binary weights; ternary " << w.sign.describe() << " goes to w1a16_conv2d");
  MDQ_CHECK(x.dim(3) == packed_words(w.channels),
            op << ": input " << x.describe() << " holds " << x.dim(3) * 32 << " channel bits, weights "
               << w.sign.describe() << " expect " << w.channels << " channels");
  MDQ_CHECK(w.kernel_h() * w.kernel_w() <= 31, op << ": at most 31 taps, got " << w.sign.describe());
  const int64_t O = w.out_channels();
  detail::check_vector(op, scale, O, x);
  detail::check_vector(op, shift, O, x);
  return {x.dim(0), detail::out_size(x.dim(1), w.kernel_h(), g), detail::out_size(x.dim(2), w.kernel_w(), g), O};
}

// (scale·d + shift + skip >= 0) in f32, the product rounded before the sum, as the Affine
// output is, and the skip (0: none) added to that sum, as the residual output adds it.
bool affine_nonnegative(float scale, float shift, int64_t d, float skip) {
  volatile float product = scale * static_cast<float>(d);  // volatile: no fused multiply-add
  volatile float affine = product + shift;
  return affine + skip >= 0.f;  // + 0 changes only -0, whose test is the same
}

// dmin[o], flip[o] = dmin[O + o] with (scale·d + shift + skip >= 0) == ((d >= dmin) xor flip)
// for every |d| <= range.
void fill_thresholds(const float* sc, const float* sh, float skip, int64_t O, int64_t range, int32_t* dmin) {
  int32_t* flip = dmin + O;
  for (int64_t o = 0; o < O; ++o) {
    const float s = sc[o], b = sh[o];
    auto P = [&](int64_t d) { return affine_nonnegative(s, b, d, skip); };
    if (!(s > 0.f) && !(s < 0.f)) {  // 0 or NaN: the same answer for every d
      dmin[o] = static_cast<int32_t>(-range);
      flip[o] = P(0) ? 0 : 1;
      continue;
    }
    // P is monotone: find the first d in [-range, range + 1] where it changes from P(-range).
    const bool first = P(-range);
    int64_t lo = -range, hi = range + 1;  // P(lo) == first; hi: past the end
    while (hi - lo > 1) {
      const int64_t mid = lo + (hi - lo) / 2;
      (P(mid) == first ? lo : hi) = mid;
    }
    if (s > 0.f) {  // false ... false true ... true: dmin = the first true
      dmin[o] = static_cast<int32_t>(first ? -range : hi);
      flip[o] = 0;
    } else {  // true ... true false ... false: bit = not (d >= first false)
      dmin[o] = static_cast<int32_t>(first ? hi : -range);
      flip[o] = 1;
    }
  }
}

// One (dmin, flip) pair of rows per skip value: i32 [2 skips.size()][O] on device.
Tensor thresholds_for(const char* op, const PackedWeights& w, const Tensor& scale, const Tensor& shift, Device device,
                      const std::vector<float>& skips) {
  const int64_t O = w.out_channels(), range = w.kernel_h() * w.kernel_w() * w.channels;  // |d| <= range
  Tensor sc = scale.defined() ? scale.cpu() : Tensor::full({O}, 1.f);
  Tensor sh = shift.defined() ? shift.cpu() : Tensor::full({O}, 0.f);
  MDQ_CHECK(sc.numel() == O && sh.numel() == O && sc.dtype() == DType::F32 && sh.dtype() == DType::F32,
            op << ": scale " << sc.describe() << " and shift " << sh.describe() << " need " << O << " f32 values");
  Tensor t = Tensor::empty({2 * static_cast<int64_t>(skips.size()), O}, DType::I32);
  for (size_t i = 0; i < skips.size(); ++i)
    fill_thresholds(sc.data<float>(), sh.data<float>(), skips[i], O, range, t.data<int32_t>() + 2 * i * O);
  return t.to(device);
}

// A caller's thresholds: rows x O i32 on x's device.
void check_thresholds(const char* op, const Tensor& t, int64_t rows, int64_t O, const Tensor& x) {
  check_dtype(op, t, DType::I32);
  MDQ_CHECK(t.numel() == rows * O, op << ": thresholds " << t.describe() << " need " << rows << " x " << O);
  check_same_device(op, x, t);
}

}  // namespace

Tensor sign_thresholds(const PackedWeights& w, const Tensor& scale, const Tensor& shift, Device device) {
  return thresholds_for("sign_thresholds", w, scale, shift, device, {0.f});
}

Tensor skip_sign_thresholds(const PackedWeights& w, const Tensor& scale, const Tensor& shift, Device device) {
  return thresholds_for("skip_sign_thresholds", w, scale, shift, device, {-1.f, 1.f});
}

Tensor binary_conv2d(const Tensor& x, const PackedWeights& w, ConvGeometry g, const BinaryOutput& out) {
  const char* op = "binary_conv2d";
  const Shape shape = check_w1a1(op, x, w, g, out.scale, out.shift);
  const int64_t N = shape[0], OH = shape[1], OW = shape[2], O = shape[3];
  const bool pack = out.mode == BinaryOutputMode::SignPack;
  const DType dt = out.mode == BinaryOutputMode::Int32   ? DType::I32
                   : out.mode == BinaryOutputMode::Int16 ? DType::I16
                   : pack                                ? DType::U32
                                                         : DType::F32;
  if (out.mode == BinaryOutputMode::Int16) {
    const int64_t K = w.kernel_h() * w.kernel_w() * w.channels;  // |d| <= K
    MDQ_CHECK(K <= kInt16MaxK, op << ": an Int16 output holds the sums exactly only for K = KH·KW·C <= " << kInt16MaxK
                                  << " (int16's largest value); weights " << w.sign.describe() << " with "
                                  << w.channels << " channels have K = " << K);
  }
  Tensor y = Tensor::empty({N, OH, OW, pack ? packed_words(O) : O}, dt, x.device());

  if (out.thresholds.defined()) check_thresholds(op, out.thresholds, 2, O, x);
  const Tensor thresholds = !pack || out.thresholds.defined() ? out.thresholds
                                                               : sign_thresholds(w, out.scale, out.shift, x.device());

  if (x.is_cuda()) {
    Tensor pixel_popc;
    kernels::BinaryConvArgs a = cuda_args(op, x, w, g, shape, out.scale, out.shift, epilogue(out.mode), pixel_popc);
    a.thresholds = pack ? thresholds.data<int32_t>() : nullptr;
    a.out = y.raw();
    cuda_impl(op, &CudaBackend::binary_conv2d)(a);
    return y;
  }

  std::vector<int32_t> d = binary_conv_cpu(x, w, g, OH, OW);
  const int64_t P = N * OH * OW;
  const float* sc = out.scale.defined() ? out.scale.data<float>() : nullptr;
  const float* sh = out.shift.defined() ? out.shift.data<float>() : nullptr;
  auto affine = [&](int64_t p, int64_t o) {
    return (sc ? sc[o] : 1.f) * static_cast<float>(d[static_cast<size_t>(p * O + o)]) + (sh ? sh[o] : 0.f);
  };
  switch (out.mode) {
    case BinaryOutputMode::Int32:
      std::copy(d.begin(), d.end(), y.data<int32_t>());
      break;
    case BinaryOutputMode::Int16:  // |d| <= K <= kInt16MaxK (checked above): exact
      std::transform(d.begin(), d.end(), y.data<int16_t>(), [](int32_t v) { return static_cast<int16_t>(v); });
      break;
    case BinaryOutputMode::Affine:
    case BinaryOutputMode::AffineRelu: {
      float* yp = y.data<float>();
      for (int64_t p = 0; p < P; ++p)
        for (int64_t o = 0; o < O; ++o) {
          const float v = affine(p, o);
          yp[p * O + o] = out.mode == BinaryOutputMode::AffineRelu ? std::max(v, 0.f) : v;
        }
      break;
    }
    case BinaryOutputMode::SignPack: {
      const int32_t* dmin = thresholds.data<int32_t>();
      const int32_t* flip = dmin + O;
      const int64_t Ow = packed_words(O);
      uint32_t* yp = y.data<uint32_t>();
      std::fill(yp, yp + P * Ow, 0u);
      for (int64_t p = 0; p < P; ++p)
        for (int64_t o = 0; o < O; ++o)
          if ((d[static_cast<size_t>(p * O + o)] >= dmin[o]) != (flip[o] != 0)) yp[p * Ow + o / 32] |= 1u << (o % 32);
      break;
    }
  }
  return y;
}

ResidualOutput binary_conv2d_residual(const Tensor& x, const PackedWeights& w, ConvGeometry g, const Tensor& scale,
                                      const Tensor& shift, const Tensor& residual, bool with_sum) {
  const char* op = "binary_conv2d_residual";
  const Shape shape = check_w1a1(op, x, w, g, scale, shift);
  check_dtype(op, residual, DType::F32);
  check_same_device(op, x, residual);
  MDQ_CHECK(residual.shape() == shape, op << ": residual " << residual.describe() << " must have shape "
                                          << Tensor::empty(shape).describe());
  if (!x.is_cuda()) {  // the reference: the affine output, plus the residual, then packed
    Tensor y = binary_conv2d(x, w, g, {BinaryOutputMode::Affine, scale, shift});
    float* yp = y.data<float>();
    for (int64_t i = 0; i < y.numel(); ++i) yp[i] += residual.data<float>()[i];
    return {with_sum ? y : Tensor(), pack_signs(y)};
  }
  ResidualOutput r{with_sum ? Tensor::empty(shape, DType::F32, x.device()) : Tensor(),
                   Tensor::empty({shape[0], shape[1], shape[2], packed_words(shape[3])}, DType::U32, x.device())};
  Tensor pixel_popc;
  kernels::BinaryConvArgs a =
      cuda_args(op, x, w, g, shape, scale, shift, kernels::BinaryEpilogue::ResidualSignPack, pixel_popc);
  a.residual = residual.data<float>();
  a.out = with_sum ? r.y.raw() : nullptr;
  a.out_bits = r.bits.data<uint32_t>();
  cuda_impl(op, &CudaBackend::binary_conv2d)(a);
  return r;
}

Tensor binary_conv2d_shortcut_signs(const Tensor& h, const PackedWeights& w, ConvGeometry g, const Tensor& scale,
                                    const Tensor& shift, const Tensor& x, const Shortcut& sc, bool* fused) {
  const char* op = "binary_conv2d_shortcut_signs";
  const Shape shape = check_w1a1(op, h, w, g, scale, shift);
  const Shape s_shape = check_w1a1(op, x, sc.w, sc.g, sc.scale, sc.shift);
  check_same_device(op, h, x);
  MDQ_CHECK(s_shape == shape, op << ": the shortcut's output " << Tensor::empty(s_shape).describe()
                                 << " must have the main conv's shape " << Tensor::empty(shape).describe());
  if (fused) *fused = false;
  if (h.is_cuda() && sc.w.kernel_h() == 1 && sc.w.kernel_w() == 1 && sc.g.padding == 0) {
    Tensor pixel_popc;
    // (ShortcutSignPack reads no pixel popcounts: none are computed for a fallback that
    // computes its own.)
    kernels::BinaryConvArgs a =
        cuda_args(op, h, w, g, shape, scale, shift, kernels::BinaryEpilogue::ShortcutSignPack, pixel_popc);
    kernels::BinaryShortcut& s = a.shortcut;
    s.x = x.data<uint32_t>();
    s.w = sc.w.sign.data<uint32_t>();
    s.tap_popc = sc.w.tap_popc.data<int32_t>();
    s.scale = sc.scale.defined() ? sc.scale.data<float>() : nullptr;
    s.shift = sc.shift.defined() ? sc.shift.data<float>() : nullptr;
    s.H = static_cast<int>(x.dim(1)), s.W = static_cast<int>(x.dim(2));
    s.C = static_cast<int>(sc.w.channels), s.stride = static_cast<int>(sc.g.stride);
    if (cuda_impl(op, &CudaBackend::binary_conv_fuses_shortcut)(a)) {
      Tensor bits = Tensor::empty({shape[0], shape[1], shape[2], packed_words(shape[3])}, DType::U32, h.device());
      a.out = nullptr;  // the signs only
      a.out_bits = bits.data<uint32_t>();
      cuda_impl(op, &CudaBackend::binary_conv2d)(a);
      if (fused) *fused = true;
      return bits;
    }
  }
  const Tensor skip = binary_conv2d(x, sc.w, sc.g, {BinaryOutputMode::Affine, sc.scale, sc.shift});
  return binary_conv2d_residual(h, w, g, scale, shift, skip, /*with_sum=*/false).bits;
}

Tensor binary_conv2d_skip_signs(const Tensor& x, const PackedWeights& w, ConvGeometry g, const Tensor& scale,
                                const Tensor& shift, const Tensor& skip_bits, const Tensor& thresholds) {
  const char* op = "binary_conv2d_skip_signs";
  const Shape shape = check_w1a1(op, x, w, g, scale, shift);
  const int64_t N = shape[0], OH = shape[1], OW = shape[2], O = shape[3], Ow = packed_words(O);
  const Shape bits_shape{N, OH, OW, Ow};
  check_dtype(op, skip_bits, DType::U32);
  check_same_device(op, x, skip_bits);
  MDQ_CHECK(skip_bits.shape() == bits_shape, op << ": skip bits " << skip_bits.describe() << " must have shape "
                                                 << Tensor::empty(bits_shape, DType::U32).describe());
  if (thresholds.defined()) check_thresholds(op, thresholds, 4, O, x);
  const Tensor t = thresholds.defined() ? thresholds : skip_sign_thresholds(w, scale, shift, x.device());
  Tensor y = Tensor::empty(bits_shape, DType::U32, x.device());
  if (x.is_cuda()) {
    Tensor pixel_popc;
    kernels::BinaryConvArgs a =
        cuda_args(op, x, w, g, shape, scale, shift, kernels::BinaryEpilogue::SkipSignPack, pixel_popc);
    a.thresholds = t.data<int32_t>();
    a.skip_bits = skip_bits.data<uint32_t>();
    a.out = y.raw();
    cuda_impl(op, &CudaBackend::binary_conv2d)(a);
    return y;
  }
  const std::vector<int32_t> d = binary_conv_cpu(x, w, g, OH, OW);
  const int32_t* th = t.data<int32_t>();  // rows: dmin, flip for a skip of -1, then for +1
  const uint32_t* skip = skip_bits.data<uint32_t>();
  uint32_t* yp = y.data<uint32_t>();
  std::fill(yp, yp + y.numel(), 0u);
  for (int64_t p = 0; p < N * OH * OW; ++p)
    for (int64_t o = 0; o < O; ++o) {
      const int64_t word = p * Ow + o / 32;
      const int64_t set = skip[word] >> (o % 32) & 1u;  // 1: the skip is +1
      const int32_t* dmin = th + 2 * set * O;
      if ((d[static_cast<size_t>(p * O + o)] >= dmin[o]) != (dmin[O + o] != 0)) yp[word] |= 1u << (o % 32);
    }
  return y;
}

Tensor binary_linear(const Tensor& x, const PackedWeights& w, const BinaryOutput& out) {
  check_dtype("binary_linear", x, DType::U32);
  check_ndim("binary_linear", x, 2);
  MDQ_CHECK(w.kernel_h() == 1 && w.kernel_w() == 1, "binary_linear: weights " << w.sign.describe() << " are not [O][1][1][Cw]");
  Tensor y = binary_conv2d(x.reshape({x.dim(0), 1, 1, x.dim(1)}), w, {}, out);
  return y.reshape({x.dim(0), y.dim(3)});
}

}  // namespace mdq::packed

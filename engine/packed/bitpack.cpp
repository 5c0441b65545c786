// Sign packing and bf16 conversion: CPU reference loops beside the dispatch to the CUDA kernels.
#include "engine/packed/bitpack.h"

#include <cmath>
#include <cstring>

#ifdef MDQ_HAS_CUDA
#include "kernels/bitpack.h"
#endif

namespace mdq::packed {
namespace {

Shape with_last(const Shape& s, int64_t last) {
  Shape r = s;
  r.back() = last;
  return r;
}

void check_packable(const char* op, const Tensor& x) {
  MDQ_CHECK(x.defined() && x.ndim() >= 1, op << ": needs a tensor with a channel dimension, got " << x.describe());
  MDQ_CHECK(x.dim(-1) > 0, op << ": zero channels in " << x.describe());
}

}  // namespace

uint16_t float_to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if (std::isnan(x)) return static_cast<uint16_t>((u >> 16) | 0x40u);  // keep it a (quiet) NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                        // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}

float bf16_to_float(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

Tensor to_bf16(const Tensor& x) {
  check_dtype("to_bf16", x, DType::F32);
  Tensor y = Tensor::empty(x.shape(), DType::BF16, x.device());
  if (x.is_cuda()) {
#ifdef MDQ_HAS_CUDA
    kernels::f32_to_bf16(x.data<float>(), y.data<uint16_t>(), x.numel());
#endif
    return y;
  }
  const float* p = x.data<float>();
  uint16_t* q = y.data<uint16_t>();
  for (int64_t i = 0; i < x.numel(); ++i) q[i] = float_to_bf16(p[i]);
  return y;
}

Tensor to_f32(const Tensor& x) {
  check_dtype("to_f32", x, DType::BF16);
  Tensor y = Tensor::empty(x.shape(), DType::F32, x.device());
  if (x.is_cuda()) {
#ifdef MDQ_HAS_CUDA
    kernels::bf16_to_f32(x.data<uint16_t>(), y.data<float>(), x.numel());
#endif
    return y;
  }
  const uint16_t* p = x.data<uint16_t>();
  float* q = y.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) q[i] = bf16_to_float(p[i]);
  return y;
}

Tensor pack_signs(const Tensor& x) {
  check_packable("pack_signs", x);
  MDQ_CHECK(x.dtype() == DType::F32 || x.dtype() == DType::BF16,
            "pack_signs: expects f32 or bf16 values, got " << x.describe());
  const int64_t C = x.dim(-1), Cw = packed_words(C), P = x.numel() / C;
  Tensor bits = Tensor::empty(with_last(x.shape(), Cw), DType::U32, x.device());
  if (x.is_cuda()) {
#ifdef MDQ_HAS_CUDA
    if (x.dtype() == DType::F32)
      kernels::pack_signs_pc_f32(x.data<float>(), bits.data<uint32_t>(), P, static_cast<int>(C));
    else
      kernels::pack_signs_pc_bf16(x.data<uint16_t>(), bits.data<uint32_t>(), P, static_cast<int>(C));
#endif
    return bits;
  }
  Tensor xf = x.dtype() == DType::F32 ? x : to_f32(x);
  const float* p = xf.data<float>();
  uint32_t* b = bits.data<uint32_t>();
  std::memset(b, 0, bits.nbytes());
  for (int64_t r = 0; r < P; ++r)
    for (int64_t c = 0; c < C; ++c)
      if (p[r * C + c] >= 0.f) b[r * Cw + c / 32] |= 1u << (c % 32);
  return bits;
}

Tensor pack_signs_nchw(const Tensor& x) {
  check_dtype("pack_signs_nchw", x, DType::F32);
  MDQ_CHECK(x.ndim() == 4 || x.ndim() == 2,
            "pack_signs_nchw: expects [N][C][H][W] (or [O][C] linear weights), got " << x.describe());
  const int64_t N = x.dim(0), C = x.dim(1), H = x.ndim() == 4 ? x.dim(2) : 1, W = x.ndim() == 4 ? x.dim(3) : 1;
  const int64_t Cw = packed_words(C), S = H * W;
  Shape out_shape = x.ndim() == 4 ? Shape{N, H, W, Cw} : Shape{N, Cw};
  Tensor bits = Tensor::empty(out_shape, DType::U32, x.device());
  if (x.is_cuda()) {
#ifdef MDQ_HAS_CUDA
    kernels::pack_signs_ncs_f32(x.data<float>(), bits.data<uint32_t>(), N, static_cast<int>(C), S);
#endif
    return bits;
  }
  const float* p = x.data<float>();
  uint32_t* b = bits.data<uint32_t>();
  std::memset(b, 0, bits.nbytes());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t s = 0; s < S; ++s)
        if (p[(n * C + c) * S + s] >= 0.f) b[(n * S + s) * Cw + c / 32] |= 1u << (c % 32);
  return bits;
}

Tensor unpack_signs(const Tensor& bits, int64_t channels) {
  check_dtype("unpack_signs", bits, DType::U32);
  MDQ_CHECK(bits.ndim() >= 1 && bits.dim(-1) == packed_words(channels),
            "unpack_signs: " << bits.describe() << " does not hold " << channels << " channels");
  const int64_t Cw = bits.dim(-1), P = bits.numel() / Cw;
  Tensor x = Tensor::empty(with_last(bits.shape(), channels), DType::F32, bits.device());
  if (bits.is_cuda()) {
#ifdef MDQ_HAS_CUDA
    kernels::unpack_signs_pc_f32(bits.data<uint32_t>(), x.data<float>(), P, static_cast<int>(channels));
#endif
    return x;
  }
  const uint32_t* b = bits.data<uint32_t>();
  float* p = x.data<float>();
  for (int64_t r = 0; r < P; ++r)
    for (int64_t c = 0; c < channels; ++c) p[r * channels + c] = (b[r * Cw + c / 32] >> (c % 32)) & 1u ? 1.f : -1.f;
  return x;
}

TernaryPlanes pack_ternary(const Tensor& x) {
  check_packable("pack_ternary", x);
  check_dtype("pack_ternary", x, DType::F32);
  const int64_t C = x.dim(-1), Cw = packed_words(C), P = x.numel() / C;
  TernaryPlanes t{Tensor::zeros(with_last(x.shape(), Cw), DType::U32, x.device()),
                  Tensor::zeros(with_last(x.shape(), Cw), DType::U32, x.device())};
  if (x.is_cuda()) {
#ifdef MDQ_HAS_CUDA
    kernels::pack_ternary_pc_f32(x.data<float>(), t.sign.data<uint32_t>(), t.nonzero.data<uint32_t>(), P,
                                 static_cast<int>(C));
#endif
    return t;
  }
  const float* p = x.data<float>();
  uint32_t* s = t.sign.data<uint32_t>();
  uint32_t* z = t.nonzero.data<uint32_t>();
  for (int64_t r = 0; r < P; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const float v = p[r * C + c];
      if (v > 0.f) s[r * Cw + c / 32] |= 1u << (c % 32);
      if (v != 0.f) z[r * Cw + c / 32] |= 1u << (c % 32);
    }
  return t;
}

Tensor unpack_ternary(const TernaryPlanes& planes, int64_t channels) {
  Tensor s = unpack_signs(planes.sign.cpu(), channels), z = unpack_signs(planes.nonzero.cpu(), channels);
  float* ps = s.data<float>();
  const float* pz = z.data<float>();
  for (int64_t i = 0; i < s.numel(); ++i) ps[i] = pz[i] > 0.f ? ps[i] : 0.f;
  return s.to(planes.sign.device());
}

Tensor nchw_to_nhwc(const Tensor& x) {
  check_dtype("nchw_to_nhwc", x, DType::F32);
  check_ndim("nchw_to_nhwc", x, 4);
  Tensor c = x.cpu();
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  Tensor y = Tensor::empty({N, H, W, C});
  const float* p = c.data<float>();
  float* q = y.data<float>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t ch = 0; ch < C; ++ch)
      for (int64_t s = 0; s < H * W; ++s) q[(n * H * W + s) * C + ch] = p[(n * C + ch) * H * W + s];
  return y.to(x.device());
}

Tensor nhwc_to_nchw(const Tensor& x) {
  check_dtype("nhwc_to_nchw", x, DType::F32);
  check_ndim("nhwc_to_nchw", x, 4);
  Tensor c = x.cpu();
  const int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2), C = x.dim(3);
  Tensor y = Tensor::empty({N, C, H, W});
  const float* p = c.data<float>();
  float* q = y.data<float>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t ch = 0; ch < C; ++ch)
      for (int64_t s = 0; s < H * W; ++s) q[(n * C + ch) * H * W + s] = p[(n * H * W + s) * C + ch];
  return y.to(x.device());
}

int level_set(const Tensor& t) {
  bool zero = false;
  for (float v : t.to_vector()) {
    if (v == 0.f) zero = true;
    else if (v != 1.f && v != -1.f) return 0;
  }
  return zero ? 3 : 2;
}

}  // namespace mdq::packed

// Sign packing and bf16 conversion: CPU reference loops beside one dispatch each (the CUDA
// kernels: kernels/bitpack.cu).
#include "engine/packed/bitpack.h"

#include <cstring>
#include <type_traits>

#include "engine/backend/registry.h"

namespace mdq::packed {
namespace {

using backend::CudaBackend;
using backend::dispatch;

Shape with_last(const Shape& s, int64_t last) {
  Shape r = s;
  r.back() = last;
  return r;
}

void check_packable(const char* op, const Tensor& x) {
  MDQ_CHECK(x.defined() && x.ndim() >= 1, op << ": needs a tensor with a channel dimension, got " << x.describe());
  MDQ_CHECK(x.dim(-1) > 0, op << ": zero channels in " << x.describe());
}

void f32_to_bf16_cpu(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = float_to_bf16(x[i]);
}

void bf16_to_f32_cpu(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_float(x[i]);
}

// [P][C] values -> bits [P][Cw]: bit c%32 of word c/32 is 1 when x >= 0.
template <class T>
void pack_signs_pc_cpu(const T* x, uint32_t* bits, int64_t P, int C) {
  const int64_t Cw = packed_words(C);
  std::memset(bits, 0, static_cast<size_t>(P * Cw) * sizeof(uint32_t));
  for (int64_t r = 0; r < P; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const T v = x[r * C + c];
      if constexpr (std::is_same_v<T, float>) {
        if (v >= 0.f) bits[r * Cw + c / 32] |= 1u << (c % 32);
      } else {
        if (bf16_to_float(v) >= 0.f) bits[r * Cw + c / 32] |= 1u << (c % 32);
      }
    }
}

void pack_signs_ncs_cpu(const float* x, uint32_t* bits, int64_t N, int C, int64_t S) {
  const int64_t Cw = packed_words(C);
  std::memset(bits, 0, static_cast<size_t>(N * S * Cw) * sizeof(uint32_t));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t s = 0; s < S; ++s)
        if (x[(n * C + c) * S + s] >= 0.f) bits[(n * S + s) * Cw + c / 32] |= 1u << (c % 32);
}

void unpack_signs_pc_cpu(const uint32_t* bits, float* x, int64_t P, int C) {
  const int64_t Cw = packed_words(C);
  for (int64_t r = 0; r < P; ++r)
    for (int64_t c = 0; c < C; ++c) x[r * C + c] = (bits[r * Cw + c / 32] >> (c % 32)) & 1u ? 1.f : -1.f;
}

void pack_ternary_pc_cpu(const float* x, uint32_t* sign, uint32_t* nonzero, int64_t P, int C) {
  const int64_t Cw = packed_words(C);
  std::memset(sign, 0, static_cast<size_t>(P * Cw) * sizeof(uint32_t));
  std::memset(nonzero, 0, static_cast<size_t>(P * Cw) * sizeof(uint32_t));
  for (int64_t r = 0; r < P; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const float v = x[r * C + c];
      if (v > 0.f) sign[r * Cw + c / 32] |= 1u << (c % 32);
      if (v != 0.f) nonzero[r * Cw + c / 32] |= 1u << (c % 32);
    }
}

}  // namespace

Tensor to_bf16(const Tensor& x) {
  check_dtype("to_bf16", x, DType::F32);
  Tensor y = Tensor::empty(x.shape(), DType::BF16, x.device());
  dispatch("to_bf16", x.device(), f32_to_bf16_cpu, &CudaBackend::f32_to_bf16)(x.data<float>(), y.data<uint16_t>(),
                                                                             x.numel());
  return y;
}

Tensor to_f32(const Tensor& x) {
  check_dtype("to_f32", x, DType::BF16);
  Tensor y = Tensor::empty(x.shape(), DType::F32, x.device());
  dispatch("to_f32", x.device(), bf16_to_f32_cpu, &CudaBackend::bf16_to_f32)(x.data<uint16_t>(), y.data<float>(),
                                                                            x.numel());
  return y;
}

Tensor pack_signs(const Tensor& x) {
  check_packable("pack_signs", x);
  MDQ_CHECK(x.dtype() == DType::F32 || x.dtype() == DType::BF16,
            "pack_signs: expects f32 or bf16 values, got " << x.describe());
  const int64_t C = x.dim(-1), Cw = packed_words(C), P = x.numel() / C;
  Tensor bits = Tensor::empty(with_last(x.shape(), Cw), DType::U32, x.device());
  if (x.dtype() == DType::F32)
    dispatch("pack_signs", x.device(), pack_signs_pc_cpu<float>, &CudaBackend::pack_signs_pc_f32)(
        x.data<float>(), bits.data<uint32_t>(), P, static_cast<int>(C));
  else
    dispatch("pack_signs", x.device(), pack_signs_pc_cpu<uint16_t>, &CudaBackend::pack_signs_pc_bf16)(
        x.data<uint16_t>(), bits.data<uint32_t>(), P, static_cast<int>(C));
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
  dispatch("pack_signs_nchw", x.device(), pack_signs_ncs_cpu, &CudaBackend::pack_signs_ncs_f32)(
      x.data<float>(), bits.data<uint32_t>(), N, static_cast<int>(C), S);
  return bits;
}

Tensor unpack_signs(const Tensor& bits, int64_t channels) {
  check_dtype("unpack_signs", bits, DType::U32);
  MDQ_CHECK(bits.ndim() >= 1 && bits.dim(-1) == packed_words(channels),
            "unpack_signs: " << bits.describe() << " does not hold " << channels << " channels");
  const int64_t P = bits.numel() / bits.dim(-1);
  Tensor x = Tensor::empty(with_last(bits.shape(), channels), DType::F32, bits.device());
  dispatch("unpack_signs", bits.device(), unpack_signs_pc_cpu, &CudaBackend::unpack_signs_pc_f32)(
      bits.data<uint32_t>(), x.data<float>(), P, static_cast<int>(channels));
  return x;
}

TernaryPlanes pack_ternary(const Tensor& x) {
  check_packable("pack_ternary", x);
  check_dtype("pack_ternary", x, DType::F32);
  const int64_t C = x.dim(-1), Cw = packed_words(C), P = x.numel() / C;
  TernaryPlanes t{Tensor::empty(with_last(x.shape(), Cw), DType::U32, x.device()),
                  Tensor::empty(with_last(x.shape(), Cw), DType::U32, x.device())};
  dispatch("pack_ternary", x.device(), pack_ternary_pc_cpu, &CudaBackend::pack_ternary_pc_f32)(
      x.data<float>(), t.sign.data<uint32_t>(), t.nonzero.data<uint32_t>(), P, static_cast<int>(C));
  return t;
}

Tensor unpack_ternary(const TernaryPlanes& planes, int64_t channels) {
  Tensor s = unpack_signs(planes.sign.cpu(), channels), z = unpack_signs(planes.nonzero.cpu(), channels);
  float* ps = s.data<float>();
  const float* pz = z.data<float>();
  for (int64_t i = 0; i < s.numel(); ++i) ps[i] = pz[i] > 0.f ? ps[i] : 0.f;
  return s.to(planes.sign.device());
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

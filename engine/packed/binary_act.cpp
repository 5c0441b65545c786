// Max pooling, global average pooling and NCHW unpacking of packed ±1 activations (engine/packed/binary_act.h): argument
// checks, the CPU reference loops, and one dispatch each (the CUDA side: kernels/binary_act.cu).
#include "engine/packed/binary_act.h"

#include "engine/backend/registry.h"
#include "engine/ops/pooling.h"
#include "engine/packed/bitpack.h"

namespace mdq::packed {
namespace {

using backend::CudaBackend;
using backend::dispatch;

// Each output word is the OR of the window's words: the max of ±1 values, bit by bit.
void maxpool_bits_cpu(const uint32_t* x, uint32_t* y, int N, int H, int W, int Cw, int kernel, int stride,
                      int padding, int OH, int OW) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow)
        for (int64_t w = 0; w < Cw; ++w) {
          uint32_t acc = 0u;
          for (int64_t kh = 0; kh < kernel; ++kh)
            for (int64_t kw = 0; kw < kernel; ++kw) {
              const int64_t ih = oh * stride - padding + kh, iw = ow * stride - padding + kw;
              if (ih >= 0 && ih < H && iw >= 0 && iw < W) acc |= x[((n * H + ih) * W + iw) * Cw + w];
            }
          y[((n * OH + oh) * OW + ow) * Cw + w] = acc;
        }
}

// The mean of a channel's ±1 values as ops::global_avg_pool_forward's CPU loop computes it: the
// sum (2 count - S, exact) in double, divided by S in double, rounded to f32.
void global_avg_pool_bits_cpu(const uint32_t* bits, float* out, int64_t N, int C, int64_t S) {
  const int64_t Cw = packed_words(C);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      int64_t count = 0;
      for (int64_t s = 0; s < S; ++s) count += (bits[(n * S + s) * Cw + c / 32] >> (c % 32)) & 1u;
      out[n * C + c] = static_cast<float>(static_cast<double>(2 * count - S) / static_cast<double>(S));
    }
}

void unpack_signs_ncs_cpu(const uint32_t* bits, float* x, int64_t N, int C, int64_t S) {
  const int64_t Cw = packed_words(C);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t s = 0; s < S; ++s)
        x[(n * C + c) * S + s] = (bits[(n * S + s) * Cw + c / 32] >> (c % 32)) & 1u ? 1.f : -1.f;
}

}  // namespace

Tensor max_pool2d_bits(const Tensor& bits, int64_t kernel, int64_t stride, int64_t padding) {
  const char* op = "max_pool2d_bits";
  check_dtype(op, bits, DType::U32);
  check_ndim(op, bits, 4);
  MDQ_CHECK(kernel >= 1 && stride >= 1 && padding >= 0 && padding <= kernel / 2,
            op << ": bad window: kernel " << kernel << ", stride " << stride << ", padding " << padding);
  const int64_t N = bits.dim(0), H = bits.dim(1), W = bits.dim(2), Cw = bits.dim(3);
  MDQ_CHECK(H + 2 * padding >= kernel && W + 2 * padding >= kernel,
            op << ": kernel " << kernel << " larger than the padded input " << bits.describe());
  const int64_t OH = ops::pool_output_size(H, kernel, stride, padding);
  const int64_t OW = ops::pool_output_size(W, kernel, stride, padding);
  MDQ_CHECK(bits.numel() < (int64_t{1} << 31) && N * OH * OW * Cw < (int64_t{1} << 31),
            op << ": input " << bits.describe() << " too large for 32-bit indexing");
  Tensor y = Tensor::empty({N, OH, OW, Cw}, DType::U32, bits.device());
  dispatch(op, bits.device(), maxpool_bits_cpu, &CudaBackend::maxpool_bits_nhwc)(
      bits.data<uint32_t>(), y.data<uint32_t>(), static_cast<int>(N), static_cast<int>(H), static_cast<int>(W),
      static_cast<int>(Cw), static_cast<int>(kernel), static_cast<int>(stride), static_cast<int>(padding),
      static_cast<int>(OH), static_cast<int>(OW));
  return y;
}

Tensor global_avg_pool_bits(const Tensor& bits, int64_t channels) {
  const char* op = "global_avg_pool_bits";
  check_dtype(op, bits, DType::U32);
  check_ndim(op, bits, 4);
  MDQ_CHECK(channels > 0 && bits.dim(3) == packed_words(channels),
            op << ": " << bits.describe() << " does not hold " << channels << " channels");
  const int64_t N = bits.dim(0), S = bits.dim(1) * bits.dim(2);
  MDQ_CHECK(S > 0, op << ": empty planes in " << bits.describe());
  Tensor y = Tensor::empty({N, channels}, DType::F32, bits.device());
  dispatch(op, bits.device(), global_avg_pool_bits_cpu, &CudaBackend::global_avg_pool_bits)(
      bits.data<uint32_t>(), y.data<float>(), N, static_cast<int>(channels), S);
  return y;
}

Tensor unpack_signs_nchw(const Tensor& bits, int64_t channels) {
  const char* op = "unpack_signs_nchw";
  check_dtype(op, bits, DType::U32);
  check_ndim(op, bits, 4);
  MDQ_CHECK(bits.dim(3) == packed_words(channels), op << ": " << bits.describe() << " does not hold " << channels
                                                      << " channels");
  const int64_t N = bits.dim(0), H = bits.dim(1), W = bits.dim(2), S = H * W, C = channels;
  Tensor x = Tensor::empty({N, C, H, W}, DType::F32, bits.device());
  dispatch(op, bits.device(), unpack_signs_ncs_cpu, &CudaBackend::unpack_signs_ncs_f32)(
      bits.data<uint32_t>(), x.data<float>(), N, static_cast<int>(C), S);
  return x;
}

}  // namespace mdq::packed

// Times ops::matmul against cublasGemmEx called directly, on ResNet-18-sized GEMMs, in fp32,
// tf32 and bf16: how much does the engine's wrapper (checks, output allocation, math-mode and
// precision dispatch, bf16 operand rounding) cost over the bare library call?
#include <algorithm>
#include <cstdio>
#include <functional>
#include <vector>

#include "engine/device.h"
#include "engine/ops/matmul.h"
#include "engine/precision.h"
#ifdef MDQ_HAS_CUDA
#include "kernels/cuda_common.h"
#include "kernels/matmul.h"
#endif

using namespace mdq;

#ifdef MDQ_HAS_CUDA
namespace {

struct Gemm {
  const char* name;
  int64_t m, k, n;
  bool ta, tb;
};

// Median over samples of the per-call time of fn, each sample timing `reps` back-to-back calls
// between two CUDA events on the engine's stream, after a warm-up.
double median_ms(const std::function<void()>& fn, int reps = 10, int samples = 21) {
  for (int i = 0; i < 5; ++i) fn();
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<double> ms;
  for (int s = 0; s < samples; ++s) {
    CUDA_CHECK(cudaEventRecord(start, cuda::stream()));
    for (int r = 0; r < reps; ++r) fn();
    CUDA_CHECK(cudaEventRecord(stop, cuda::stream()));
    CUDA_CHECK(cudaEventSynchronize(stop));
    float t = 0;
    CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
    ms.push_back(static_cast<double>(t) / reps);
  }
  CUDA_CHECK(cudaEventDestroy(start));
  CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// The bare library call, with the same row-major-as-column-major argument swap as ops::matmul.
void direct_gemm(const Gemm& g, const void* a, const void* b, cudaDataType in_type, float* c,
                 cublasComputeType_t compute) {
  const float alpha = 1.f, beta = 0.f;
  const int lda_b = static_cast<int>(g.tb ? g.k : g.n), ldb_a = static_cast<int>(g.ta ? g.m : g.k);
  CUBLAS_CHECK(cublasGemmEx(cuda::cublas(), g.tb ? CUBLAS_OP_T : CUBLAS_OP_N, g.ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                            static_cast<int>(g.n), static_cast<int>(g.m), static_cast<int>(g.k), &alpha, b, in_type,
                            lda_b, a, in_type, ldb_a, &beta, c, CUDA_R_32F, static_cast<int>(g.n), compute,
                            CUBLAS_GEMM_DEFAULT));
}

}  // namespace
#endif

int main() {
#ifndef MDQ_HAS_CUDA
  std::printf("bench_matmul: this build has no CUDA backend; nothing to time.\n");
  return 0;
#else
  if (!cuda_available()) {
    std::printf("bench_matmul: no usable GPU (%s); nothing to time.\n", cuda_unavailable_reason().c_str());
    return 0;
  }
  std::printf("bench_matmul on %s\n", cuda_device_name().c_str());
  std::printf("mdq = ops::matmul (allocates its output; bf16 includes rounding both operands),\n"
              "direct = cublasGemmEx on preallocated buffers (bf16: operands rounded beforehand).\n\n");
  const Gemm gemms[] = {
      {"fc fwd   x wT  (256x512 -> 1000)", 256, 512, 1000, false, true},
      {"fc dW    gT x  (1000x256 . 256x512)", 1000, 256, 512, true, false},
      {"conv3x3 as GEMM (M=128*16*16 K=256*9 N=256)", 128 * 16 * 16, 256 * 9, 256, false, false},
  };
  std::printf("%-46s %-5s %10s %10s %9s %9s %7s\n", "GEMM", "prec", "mdq ms", "direct ms", "mdq TF/s", "dir TF/s",
              "ratio");
  for (const Gemm& g : gemms) {
    Tensor a = Tensor::uniform(g.ta ? Shape{g.k, g.m} : Shape{g.m, g.k}, -1, 1, 1, Device::CUDA);
    Tensor b = Tensor::uniform(g.tb ? Shape{g.n, g.k} : Shape{g.k, g.n}, -1, 1, 2, Device::CUDA);
    Tensor c = Tensor::empty({g.m, g.n}, DType::F32, Device::CUDA);
    Tensor a16 = Tensor::empty(a.shape(), DType::BF16, Device::CUDA);
    Tensor b16 = Tensor::empty(b.shape(), DType::BF16, Device::CUDA);
    kernels::gemm_operand_to_bf16(a.data<float>(), a16.data<uint16_t>(), a.numel());
    kernels::gemm_operand_to_bf16(b.data<float>(), b16.data<uint16_t>(), b.numel());
    const double flops = 2.0 * static_cast<double>(g.m) * static_cast<double>(g.n) * static_cast<double>(g.k);
    for (Precision p : {Precision::FP32, Precision::TF32, Precision::BF16}) {
      set_precision(p);
      const double mdq_ms = median_ms([&] { ops::matmul(a, b, g.ta, g.tb); });
      CUBLAS_CHECK(cublasSetMathMode(cuda::cublas(), CUBLAS_DEFAULT_MATH));
      const double direct_ms = median_ms([&] {
        if (p == Precision::BF16)
          direct_gemm(g, a16.raw(), b16.raw(), CUDA_R_16BF, c.data<float>(), CUBLAS_COMPUTE_32F);
        else
          direct_gemm(g, a.raw(), b.raw(), CUDA_R_32F, c.data<float>(),
                      p == Precision::TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F);
      });
      std::printf("%-46s %-5s %10.4f %10.4f %9.2f %9.2f %7.3f\n", g.name, precision_name(p), mdq_ms, direct_ms,
                  flops / mdq_ms * 1e-9, flops / direct_ms * 1e-9, mdq_ms / direct_ms);
    }
  }
  set_precision(Precision::FP32);
  return 0;
#endif
}

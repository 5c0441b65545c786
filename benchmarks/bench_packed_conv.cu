// Packed convolutions vs cuDNN on ResNet-18's 3x3 layers (DESIGN.md E12): W1A1 (b1 tensor
// cores, AND+popc, fused sign + re-pack output) and W1A16 (packed binary weights, bf16
// activations and output) beside cuDNN fp32 / tf32 / bf16 (NHWC, algorithm found once), as
// effective TOPS = 2 MACs / time, ratios to cuDNN bf16, and W1A1 as a fraction of a measured
// mma.m16n8k256 AND+popc peak. Usage: bench_packed_conv [batch ...] [layer ...]: batches default to
// 1 32 256; a layer is named net+C (e.g. imagenet64) and limits the run to the layers named.
#include <cuda_runtime.h>
#include <cudnn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "benchmarks/bench_common.h"
#include "benchmarks/cudnn_conv.h"
#include "dev/kernels/w1a16_ws.h"
#include "kernels/cuda_common.h"
#include "engine/device.h"
#include "engine/packed/bitpack.h"
#include "engine/packed/packed_conv.h"
#include "kernels/ptx.cuh"
#include "common/scoped_env.h"

using namespace mdq;

namespace {

// ---- mma.sync peaks: each warp keeps kChains independent accumulator chains of one MMA, the
// W1A1 kernel's m16n8k256 b1 AND+popc (kB1) or the W1A16 kernel's m16n8k16 bf16 (operand
// contents do not change the rate; these are ±1 patterns in bf16).
constexpr int kChains = 8;
template <bool kB1>
__global__ void mma_sync_peak_kernel(int iters, int* sink) {
  using Acc = std::conditional_t<kB1, int32_t, float>;
  const uint32_t a[4] = {0x3f803f80u ^ threadIdx.x, 0x3f80bf80u, 0xbf803f80u, 0x3f803f80u};
  const uint32_t b[2] = {0x3f80bf80u, 0xbf803f80u ^ threadIdx.x};
  Acc d[kChains][4] = {};
  for (int i = 0; i < iters; ++i) {
#pragma unroll
    for (int j = 0; j < kChains; ++j) {
      if constexpr (kB1) kernels::ptx::mma_b1_and_popc(d[j], a, b[0], b[1]);
      else kernels::ptx::mma_bf16(d[j], a, b);
    }
  }
  Acc s = 0;
  for (int j = 0; j < kChains; ++j) s += d[j][0] + d[j][1] + d[j][2] + d[j][3];
  if (s == Acc(12345)) sink[0] = 1;  // keeps the chains alive
}

// ---- wgmma b1 peak (sm_90a builds): each warpgroup issues groups of 8 m64n80k256 AND+popc (the
// W1A1 kernel's instruction) on the same shared-memory operands (contents do not change the
// rate), 2 accumulator sets in turn.
__global__ void wgmma_b1_peak_kernel(int iters, int* sink) {
  __shared__ __align__(128) uint8_t ops[2048 + 2560];
  for (int i = threadIdx.x; i < 2048 + 2560; i += blockDim.x) ops[i] = static_cast<uint8_t>(i * 37 + 11);
  kernels::ptx::fence_proxy_async_shared();
  __syncthreads();
  const uint32_t base = kernels::ptx::smem_u32(ops);
  const uint64_t da = kernels::ptx::wgmma_desc(base, 1024, 128), db = kernels::ptx::wgmma_desc(base + 2048, 1280, 128);
  int32_t d0[10][4] = {}, d1[10][4] = {};
  for (int i = 0; i < iters; ++i) {
    kernels::ptx::wgmma_fence();
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      kernels::ptx::wgmma_b1_m64n80k256(d0, da, db, true);
      kernels::ptx::wgmma_b1_m64n80k256(d1, da, db, true);
    }
    kernels::ptx::wgmma_commit();
    kernels::ptx::wgmma_wait<0>();
  }
  int s = 0;
  for (int j = 0; j < 10; ++j)
    for (int e = 0; e < 4; ++e) s += d0[j][e] + d1[j][e];
  if (s == 0x7fffffff) sink[0] = s;
}

// ---- wgmma bf16 rate in the sm_90a W1A16 kernel's form (kernels/w1a16_wgmma.cu): A (64 x 16)
// from registers, B (16 x 128) K-major in the 128-byte swizzle (128 rows of 128 bytes); groups of
// 4 m64n128k16, one per k16 step of the 128-byte rows, as the kernel issues them.
__global__ void wgmma_bf16_peak_kernel(int iters, int* sink) {
  __shared__ __align__(1024) uint8_t ops[128 * 128];
  for (int i = threadIdx.x; i < 128 * 128; i += blockDim.x) ops[i] = static_cast<uint8_t>((i * 37 + 11) & 0x3f);
  kernels::ptx::fence_proxy_async_shared();
  __syncthreads();
  const uint32_t base = kernels::ptx::smem_u32(ops);
  const uint32_t a[4] = {0x3F80BF80u ^ threadIdx.x, 0xBF803F80u, 0x3F803F80u, 0xBF80BF80u ^ (threadIdx.x << 16)};
  float d[16][4] = {};
  kernels::ptx::fence_operands(d);
  for (int i = 0; i < iters; ++i) {
    kernels::ptx::wgmma_fence();
#pragma unroll
    for (int j = 0; j < 4; ++j) kernels::ptx::wgmma_bf16_m64n128k16_rs(d, a, kernels::ptx::wgmma_desc_sw128(base + 32 * j));
    kernels::ptx::wgmma_commit();
    kernels::ptx::wgmma_wait<0>();
  }
  kernels::ptx::fence_operands(d);
  float s = 0;
  for (int j = 0; j < 16; ++j)
    for (int e = 0; e < 4; ++e) s += d[j][e];
  if (s == 12345.f) sink[0] = 1;
}

// Best of 4 rounds, each round's call count grown until it lasts ~20 ms.
float time_ms(const std::function<void()>& fn) {
  for (int i = 0; i < 3; ++i) fn();  // warm-up (and cuDNN's lazy init)
  float best = 1e30f;
  int reps = 1;
  for (int round = 0; round < 4; ++round) {
    const float per_call = event_ms_per_call(fn, reps), ms = per_call * reps;
    best = std::min(best, per_call);
    if (ms < 20.f) reps = std::min(1000, reps * std::max(2, static_cast<int>(20.f / std::max(ms, 1e-3f))));
  }
  return best;
}
// The same with an A/B switch of the engine (e.g. MDQ_W1A1_KERNEL=mma) set while it runs.
float time_ms_with(const char* name, const char* value, const std::function<void()>& fn) {
  ScopedEnv with(name, value);
  return time_ms(fn);
}

// The rate (1e12 ops/s) of `launch`, which does `ops` operations a call.
template <class Launch>
double rate(Launch launch, double ops) {
  const float ms = time_ms([&] {
    launch();
    CUDA_CHECK_LAUNCH();
  });
  return ops / (ms * 1e-3) / 1e12;
}

// The same for the wgmma probes: 0 when this build has no sm_90a code or the GPU is not compute
// capability 9.0.
template <class Launch>
double sm90a_rate(Launch launch, double ops) {
#ifndef MDQ_HAS_SM90A
  (void)launch, (void)ops;
  return 0;
#else
  return cuda::compute_capability() == 90 ? rate(launch, ops) : 0;
#endif
}

// mma.sync peak of the b1 (kB1) or bf16 MMA, in 1e12 ops/s.
template <bool kB1>
double mma_sync_peak() {
  Tensor sink = Tensor::zeros({1}, DType::I32, Device::CUDA);
  const int blocks = cuda::sm_count() * 4, threads = 256, iters = 4096;
  const double ops_per_mma = 2.0 * 16 * 8 * (kB1 ? 256 : 16);
  return rate([&] { mma_sync_peak_kernel<kB1><<<blocks, threads, 0, cuda::stream()>>>(iters, sink.data<int32_t>()); },
              ops_per_mma * iters * kChains * blocks * (threads / 32));
}

double wgmma_b1_peak_tops() {
  Tensor sink = Tensor::zeros({1}, DType::I32, Device::CUDA);
  const int blocks = cuda::sm_count() * 4, iters = 2048;
  return sm90a_rate([&] { wgmma_b1_peak_kernel<<<blocks, 128, 0, cuda::stream()>>>(iters, sink.data<int32_t>()); },
                    2.0 * 64 * 80 * 256 * 8.0 * iters * blocks);
}

double wgmma_bf16_peak_tflops() {
  Tensor sink = Tensor::zeros({1}, DType::I32, Device::CUDA);
  const int blocks = cuda::sm_count() * 4, iters = 4096;
  return sm90a_rate([&] { wgmma_bf16_peak_kernel<<<blocks, 128, 0, cuda::stream()>>>(iters, sink.data<int32_t>()); },
                    2.0 * 64 * 128 * 16 * 4.0 * iters * blocks);
}

struct Layer { const char* net; int C, HW; };

}  // namespace

int main(int argc, char** argv) {
  if (!gpu_for_bench("bench_packed_conv")) return 0;
  const BenchArgs args = parse_bench_args(argc, argv, {1, 32, 256});
  const std::vector<int>& batches = args.batches;
  const std::vector<std::string>& only = args.names;

  const double mma_peak = mma_sync_peak<true>(), wgmma_peak = wgmma_b1_peak_tops();
  std::printf("GPU: %s\nb1 AND+popc peaks: mma.sync m16n8k256 %.1f TOPS, wgmma m64n80k256 %.1f TOPS\n",
              cuda_device_name().c_str(), mma_peak, wgmma_peak);
  const double peak = std::max(mma_peak, wgmma_peak);
  const char* ws_env = std::getenv("MDQ_W1A16_WS_CHANNELS");
  const int ws_channels = ws_env ? std::atoi(ws_env) : 0;
  std::printf("bf16 peaks: mma.sync m16n8k16 %.1f TFLOPS (the portable W1A16 kernel's instruction), wgmma m64n128k16 "
              "in the sm_90a W1A16 kernel's form (A in registers, B swizzled) %.1f TFLOPS\n",
              mma_sync_peak<false>(), wgmma_bf16_peak_tflops());
  std::printf("3x3 conv, stride 1, pad 1, C in = C out; TOPS = 2*MACs/time; W1A1 writes packed signs (fused\n"
              "sign + re-pack), W1A16 reads bf16 and writes bf16; x = ratio to cuDNN bf16.\n"
              "W1A1 = the kernel binary_conv2d picks (wgmma on sm_90a), %%peak of the higher peak above;\n"
              "W1A1 ws = the warp-specialised wgmma kernel wherever it runs (MDQ_W1A1_KERNEL=ws), ws async = the same\n"
              "with tiles published by an arrival their copies complete (MDQ_W1A1_WS_PUBLISH=async), W1A1 1-role = the\n"
              "wgmma kernel whose warps all gather, multiply and store (MDQ_W1A1_KERNEL=wgmma), W1A1 mma = the\n"
              "portable mma.sync kernel (MDQ_W1A1_KERNEL=mma); W1A16 = the kernel w1a16_conv2d\n"
              "picks (on sm_90a a wgmma kernel), W1A16 tma = its 256-pixel kernel fed by TMA im2col loads where it\n"
              "runs (MDQ_W1A16_KERNEL=tma: O > 64; else the cp.async kernel),\n"
              "W1A16 cp = the wgmma kernel fed by\n"
              "cp.async (MDQ_W1A16_KERNEL=cpasync), W1A16 mma = the portable mma.sync kernel (MDQ_W1A16_KERNEL=mma),\n"
              "W1A16 ws = the workshop's warp-specialised sm_90a kernel (dev/kernels/w1a16_ws.cu; its tile's channels\n"
              "by O, or MDQ_W1A16_WS_CHANNELS=64|128|256 here).\n\n");
  std::printf(
      "%-8s %5s %4s %5s | %8s %8s %8s | %8s %7s %6s | %8s %7s | %8s %7s | %10s %7s | %8s %7s | %8s %7s | %9s %7s | "
      "%9s %7s | %11s %7s | %10s %7s\n",
      "net", "C", "HW", "batch", "fp32", "tf32", "bf16", "W1A1", "x bf16", "%peak", "W1A1 ws", "x bf16", "ws async",
      "x bf16", "W1A1 1-role",
      "x bf16", "W1A1 mma", "x bf16", "W1A16", "x bf16", "W1A16 tma", "x bf16", "W1A16 cp", "x bf16", "W1A16 mma", "x bf16",
      "W1A16 ws", "x bf16");
  const Layer layers[] = {{"cifar", 64, 32},    {"cifar", 128, 16},   {"cifar", 256, 8},    {"cifar", 512, 4},
                          {"imagenet", 64, 56}, {"imagenet", 128, 28}, {"imagenet", 256, 14}, {"imagenet", 512, 7}};
  for (const Layer& L : layers) {
    const std::string name = L.net + std::to_string(L.C);
    if (!only.empty() && std::find(only.begin(), only.end(), name) == only.end()) continue;
    for (int N : batches) {
      const int C = L.C, H = L.HW, W = L.HW, O = L.C;
      const double ops = 2.0 * N * H * W * double(O) * C * 9;
      auto tops = [&](float ms) { return ops / (ms * 1e-3) / 1e12; };
      float cudnn_ms[3];
      for (int m = 0; m < 3; ++m) {
        const CudnnMode mode = static_cast<CudnnMode>(m);
        const DType et = mode == CudnnMode::BF16 ? DType::BF16 : DType::F32;
        CudnnConv conv(N, C, H, W, O, 3, 1, 1, mode);
        Tensor x = Tensor::zeros({N, H, W, C}, et, Device::CUDA), w = Tensor::zeros({O, 3, 3, C}, et, Device::CUDA);
        Tensor y = Tensor::zeros({N, H, W, O}, et, Device::CUDA);
        cudnn_ms[m] = time_ms([&] { conv.run(x, w, y); });
      }
      // W1A1: packed NHWC signs in, packed signs out (BatchNorm folded into scale/shift).
      packed::PackedWeights w = packed::pack_binary_weights(Tensor::uniform({O, C, 3, 3}, -1, 1, 1)).to(Device::CUDA);
      Tensor xb = packed::pack_signs(Tensor::uniform({N, H, W, C}, -1, 1, 2, Device::CUDA));
      Tensor scale = Tensor::full({O}, 1.f, Device::CUDA), shift = Tensor::full({O}, 0.5f, Device::CUDA);
      packed::BinaryOutput bo{packed::BinaryOutputMode::SignPack, scale, shift,
                              packed::sign_thresholds(w, scale, shift, Device::CUDA)};  // once per layer
      const float w1a1_ms = time_ms([&] { packed::binary_conv2d(xb, w, {1, 1}, bo); });
      const float ws_ms = time_ms_with("MDQ_W1A1_KERNEL", "ws", [&] { packed::binary_conv2d(xb, w, {1, 1}, bo); });
      float async_ms;
      {
        const ScopedEnv publish("MDQ_W1A1_WS_PUBLISH", "async");
        async_ms = time_ms_with("MDQ_W1A1_KERNEL", "ws", [&] { packed::binary_conv2d(xb, w, {1, 1}, bo); });
      }
      const float one_role_ms =
          time_ms_with("MDQ_W1A1_KERNEL", "wgmma", [&] { packed::binary_conv2d(xb, w, {1, 1}, bo); });
      const float mma_ms = time_ms_with("MDQ_W1A1_KERNEL", "mma", [&] { packed::binary_conv2d(xb, w, {1, 1}, bo); });
      // W1A16: bf16 NHWC in, bf16 out, per-channel scale.
      Tensor xh = packed::to_bf16(Tensor::uniform({N, H, W, C}, -1, 1, 3, Device::CUDA));
      packed::FloatOutput fo{scale, {}, false, DType::BF16};
      const float w1a16_ms = time_ms([&] { packed::w1a16_conv2d(xh, w, {1, 1}, fo); });
      const float w1a16_tma_ms =
          time_ms_with("MDQ_W1A16_KERNEL", "tma", [&] { packed::w1a16_conv2d(xh, w, {1, 1}, fo); });
      const float w1a16_cp_ms =
          time_ms_with("MDQ_W1A16_KERNEL", "cpasync", [&] { packed::w1a16_conv2d(xh, w, {1, 1}, fo); });
      const float w1a16_mma_ms =
          time_ms_with("MDQ_W1A16_KERNEL", "mma", [&] { packed::w1a16_conv2d(xh, w, {1, 1}, fo); });
      const bool ws = dev::w1a16_ws_conv2d(xh, w, {1, 1}, fo, ws_channels).defined();
      const float w1a16_ws_ms = ws ? time_ms([&] { dev::w1a16_ws_conv2d(xh, w, {1, 1}, fo, ws_channels); }) : NAN;
      std::printf("%-8s %5d %4d %5d | %8.1f %8.1f %8.1f | %8.1f %6.1fx %5.1f%% | %8.1f %6.1fx | %8.1f %6.1fx | %10.1f %6.1fx | "
                  "%8.1f %6.1fx | %8.1f %6.2fx | %9.1f %6.2fx | %9.1f %6.2fx | %11.1f %6.2fx | %10.1f %6.2fx\n",
                  L.net, C, L.HW, N, tops(cudnn_ms[0]), tops(cudnn_ms[1]), tops(cudnn_ms[2]), tops(w1a1_ms),
                  cudnn_ms[2] / w1a1_ms, 100.0 * tops(w1a1_ms) / peak, tops(ws_ms), cudnn_ms[2] / ws_ms,
                  tops(async_ms), cudnn_ms[2] / async_ms, tops(one_role_ms), cudnn_ms[2] / one_role_ms, tops(mma_ms), cudnn_ms[2] / mma_ms,
                  tops(w1a16_ms), cudnn_ms[2] / w1a16_ms, tops(w1a16_tma_ms), cudnn_ms[2] / w1a16_tma_ms,
                  tops(w1a16_cp_ms), cudnn_ms[2] / w1a16_cp_ms, tops(w1a16_mma_ms), cudnn_ms[2] / w1a16_mma_ms,
                  tops(w1a16_ws_ms), cudnn_ms[2] / w1a16_ws_ms);
    }
  }
  return 0;
}

// bench_conv2d: mdq's conv2d (forward, backward_input, backward_weight) against the same cuDNN
// calls made directly, with the algorithms and math types mdq picked, on ResNet-18-sized
// layers, in FP32 and TF32. The ratio mdq/direct is the engine's overhead (checks, plan cache
// lookup, output allocation); TFLOP/s counts 2 * MACs.
//
// Direct calls use descriptors and output buffers made once, outside the timing. Each figure is
// the median of kIters single calls timed with CUDA events on mdq's stream, after kWarmup calls.
#include <cstdio>

#include "engine/device.h"

#ifdef MDQ_HAS_CUDA
#include <algorithm>
#include <exception>
#include <functional>
#include <vector>

#include "kernels/cuda_common.h"
#include "engine/ops/conv2d.h"
#include "engine/precision.h"

using namespace mdq;

namespace {

constexpr int kWarmup = 5, kIters = 25;

struct Layer {
  const char* name;
  int N, C, H, W, O, K, stride, padding, groups;
};

double median_ms(const std::function<void()>& fn) {
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < kWarmup; ++i) fn();
  std::vector<float> ms(kIters);
  for (int i = 0; i < kIters; ++i) {
    CUDA_CHECK(cudaEventRecord(start, cuda::stream()));
    fn();
    CUDA_CHECK(cudaEventRecord(stop, cuda::stream()));
    CUDA_CHECK(cudaEventSynchronize(stop));
    CUDA_CHECK(cudaEventElapsedTime(&ms[i], start, stop));
  }
  CUDA_CHECK(cudaEventDestroy(start));
  CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(ms.begin(), ms.end());
  return ms[kIters / 2];
}

void bench(const Layer& L, Precision prec) {
  set_precision(prec);
  const ops::Conv2dParams p{L.stride, L.padding, L.groups};
  const Shape xs{L.N, L.C, L.H, L.W}, ws{L.O, L.C / L.groups, L.K, L.K};
  const Shape ys = ops::conv2d_output_shape(xs, ws, p);
  Tensor x = Tensor::uniform(xs, -1, 1, 1, Device::CUDA), w = Tensor::uniform(ws, -1, 1, 2, Device::CUDA);
  Tensor dy = Tensor::uniform(ys, -1, 1, 3, Device::CUDA);
  const double flops = 2.0 * ys[0] * ys[1] * ys[2] * ys[3] * ws[1] * ws[2] * ws[3];

  // mdq: the first calls find and cache the algorithms.
  auto mdq_fwd = [&] { ops::conv2d_forward(x, w, Tensor(), p); };
  auto mdq_bwd_in = [&] { ops::conv2d_backward_input(dy, w, xs, p); };
  auto mdq_bwd_w = [&] { ops::conv2d_backward_weight(dy, x, ws, p); };
  mdq_fwd(), mdq_bwd_in(), mdq_bwd_w();
  const ops::cudnn_conv::Choices ch = ops::cudnn_conv::choices(xs, ws, p);

  // Direct: the same descriptors, algorithms and math types, built here once.
  cudnnHandle_t h = cuda::cudnn();
  cudnnTensorDescriptor_t xd, yd;
  cudnnFilterDescriptor_t wd;
  cudnnConvolutionDescriptor_t cd[3];
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&xd));
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&yd));
  CUDNN_CHECK(cudnnCreateFilterDescriptor(&wd));
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, L.N, L.C, L.H, L.W));
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int)ys[0], (int)ys[1], (int)ys[2],
                                         (int)ys[3]));
  CUDNN_CHECK(cudnnSetFilter4dDescriptor(wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, L.O, L.C / L.groups, L.K, L.K));
  const ops::cudnn_conv::Choice* dir[3] = {&ch.forward, &ch.backward_data, &ch.backward_filter};
  size_t ws_bytes = 0;
  for (int d = 0; d < 3; ++d) {
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&cd[d]));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(cd[d], L.padding, L.padding, L.stride, L.stride, 1, 1,
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionGroupCount(cd[d], L.groups));
    CUDNN_CHECK(cudnnSetConvolutionMathType(cd[d], static_cast<cudnnMathType_t>(dir[d]->math_type)));
    ws_bytes = std::max(ws_bytes, dir[d]->workspace_bytes);
  }
  Tensor y = Tensor::empty(ys, DType::F32, Device::CUDA), dx = Tensor::empty(xs, DType::F32, Device::CUDA);
  Tensor dw = Tensor::empty(ws, DType::F32, Device::CUDA);
  void* workspace = nullptr;
  if (ws_bytes) CUDA_CHECK(cudaMalloc(&workspace, ws_bytes));
  const float one = 1.f, zero = 0.f;
  auto direct_fwd = [&] {
    CUDNN_CHECK(cudnnConvolutionForward(h, &one, xd, x.raw(), wd, w.raw(), cd[0],
                                        static_cast<cudnnConvolutionFwdAlgo_t>(ch.forward.algo), workspace,
                                        ch.forward.workspace_bytes, &zero, yd, y.raw()));
  };
  auto direct_bwd_in = [&] {
    CUDNN_CHECK(cudnnConvolutionBackwardData(h, &one, wd, w.raw(), yd, dy.raw(), cd[1],
                                             static_cast<cudnnConvolutionBwdDataAlgo_t>(ch.backward_data.algo),
                                             workspace, ch.backward_data.workspace_bytes, &zero, xd, dx.raw()));
  };
  auto direct_bwd_w = [&] {
    CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &one, xd, x.raw(), yd, dy.raw(), cd[2],
                                               static_cast<cudnnConvolutionBwdFilterAlgo_t>(ch.backward_filter.algo),
                                               workspace, ch.backward_filter.workspace_bytes, &zero, wd, dw.raw()));
  };

  const char* names[3] = {"forward", "backward_input", "backward_weight"};
  const std::function<void()> mdq_fn[3] = {mdq_fwd, mdq_bwd_in, mdq_bwd_w};
  const std::function<void()> direct_fn[3] = {direct_fwd, direct_bwd_in, direct_bwd_w};
  double total_mdq = 0, total_direct = 0;
  for (int d = 0; d < 3; ++d) {
    const double m = median_ms(mdq_fn[d]), c = median_ms(direct_fn[d]);
    total_mdq += m, total_direct += c;
    std::printf("%-12s %-5s %-16s %4d/%d %9.3f %9.3f %10.1f %10.1f %7.3f\n", L.name, precision_name(prec), names[d],
                dir[d]->algo, dir[d]->math_type, m, c, flops / m / 1e9, flops / c / 1e9, m / c);
  }
  std::printf("%-12s %-5s %-16s %6s %9.3f %9.3f %10.1f %10.1f %7.3f\n", L.name, precision_name(prec), "all three", "",
              total_mdq, total_direct, 3 * flops / total_mdq / 1e9, 3 * flops / total_direct / 1e9,
              total_mdq / total_direct);

  if (workspace) CUDA_CHECK(cudaFree(workspace));
  for (auto& c : cd) CUDNN_CHECK(cudnnDestroyConvolutionDescriptor(c));
  CUDNN_CHECK(cudnnDestroyFilterDescriptor(wd));
  CUDNN_CHECK(cudnnDestroyTensorDescriptor(yd));
  CUDNN_CHECK(cudnnDestroyTensorDescriptor(xd));
}

}  // namespace
#endif  // MDQ_HAS_CUDA

int main() {
#ifndef MDQ_HAS_CUDA
  std::printf("bench_conv2d: this build has no CUDA backend; nothing to time\n");
  return 0;
#else
  if (!mdq::cuda_available()) {
    std::printf("bench_conv2d: no GPU (%s); nothing to time\n", mdq::cuda_unavailable_reason().c_str());
    return 0;
  }
  std::printf("bench_conv2d on %s, cuDNN %zu; median of %d calls after %d warm-up\n", mdq::cuda_device_name().c_str(),
              cudnnGetVersion(), kIters, kWarmup);
  std::printf("algo/math: cudnnConvolution*Algo_t / cudnnMathType_t (3 = FMA, 0 = default) chosen by mdq\n");
  std::printf("%-12s %-5s %-16s %6s %9s %9s %10s %10s %7s\n", "layer", "prec", "op", "algo", "mdq ms", "cudnn ms",
              "mdq TF/s", "cudnn TF/s", "ratio");
  const Layer layers[] = {
      {"cifar-s3", 128, 256, 16, 16, 256, 3, 1, 1, 1},   // ResNet-18 CIFAR stage 3
      {"imnet-s1", 32, 64, 56, 56, 64, 3, 1, 1, 1},      // ResNet-18 ImageNet stage 1
      {"mbv2-dw", 128, 144, 16, 16, 144, 3, 1, 1, 144},  // MobileNetV2 CIFAR depthwise
  };
  try {
    for (const Layer& L : layers)
      for (mdq::Precision prec : {mdq::Precision::FP32, mdq::Precision::TF32}) bench(L, prec);
  } catch (const std::exception& e) {
    std::printf("bench_conv2d failed: %s\n", e.what());
    return 1;
  }
  return 0;
#endif
}

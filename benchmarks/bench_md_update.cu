// Times the fused MD-tanh-S Adam step (DESIGN.md E6 + E8, kernels/quant_update.cu) against a
// device-to-device copy of the same bytes in the same run. The step reads x̃, g, m, v and writes
// x̃, m, v, x: 8 floats per parameter. The copy moves 4 floats per parameter each way, so both
// are counted as 32 bytes (read + written) per parameter. Goal: ≥ 85% of copy bandwidth at 16M+.
// Then the step of ResNet-18's whole parameter set as training runs it, one multi-tensor launch
// (quant::MultiStep), against a loop of one per-tensor launch per parameter.
#include <algorithm>
#include <cstdio>
#include <vector>

#include "kernels/cuda_common.h"
#include "engine/device.h"
#include "engine/quant/update.h"
#include "engine/tensor.h"
#include "kernels/quant_update.h"
#include "models/model_zoo.h"

using namespace mdq;

namespace {

template <class F>
float median_ms(F&& launch, int reps = 20) {
  cudaStream_t s = cuda::stream();
  for (int i = 0; i < 3; ++i) launch();  // warm-up
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<float> ms(reps);
  for (int i = 0; i < reps; ++i) {
    CUDA_CHECK(cudaEventRecord(start, s));
    launch();
    CUDA_CHECK(cudaEventRecord(stop, s));
    CUDA_CHECK(cudaEventSynchronize(stop));
    CUDA_CHECK(cudaEventElapsedTime(&ms[i], start, stop));
  }
  CUDA_CHECK(cudaEventDestroy(start));
  CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(ms.begin(), ms.end());
  return ms[reps / 2];
}

}  // namespace

int main() {
  if (!cuda_available()) {
    std::printf("bench_md_update: no GPU (%s); nothing to time.\n", cuda_unavailable_reason().c_str());
    return 0;
  }
  std::printf("fused MD-tanh-S Adam step (binary) vs cudaMemcpyAsync D2D of the same bytes\n");
  std::printf("GPU: %s; 32 bytes (read + written) per parameter for both; median of 20 after 3 warm-ups\n\n",
              cuda_device_name().c_str());
  std::printf("%12s %11s %12s %11s %12s %7s\n", "params", "kernel ms", "kernel GB/s", "copy ms", "copy GB/s", "ratio");
  for (int64_t n : {int64_t(1) << 20, int64_t(16) << 20, int64_t(64) << 20}) {
    Tensor s = Tensor::uniform({n}, -1.f, 1.f, 1, Device::CUDA), g = Tensor::uniform({n}, -1.f, 1.f, 2, Device::CUDA);
    Tensor m = Tensor::zeros({n}, DType::F32, Device::CUDA), v = Tensor::full({n}, 1e-4f, Device::CUDA);
    Tensor x = Tensor::empty({n}, DType::F32, Device::CUDA);
    Tensor src = Tensor::zeros({4 * n}, DType::F32, Device::CUDA), dst = Tensor::empty({4 * n}, DType::F32, Device::CUDA);
    quant::StepArgs a;
    a.lr = 1e-3f;
    a.beta = a.beta_next = 1.02f;
    a.inv_bias1 = 10.f;
    a.inv_bias2 = 1000.f;
    const float kernel = median_ms([&] {
      kernels::quant_step(quant::Rule::MdTanhS, quant::Dir::Adam, 2, a, s.data<float>(), g.data<float>(),
                          m.data<float>(), v.data<float>(), x.data<float>(), n);
    });
    const float copy = median_ms([&] {
      CUDA_CHECK(cudaMemcpyAsync(dst.raw(), src.raw(), src.nbytes(), cudaMemcpyDeviceToDevice, cuda::stream()));
    });
    const double bytes = 32.0 * static_cast<double>(n);
    const double kgbs = bytes / (kernel * 1e6), cgbs = bytes / (copy * 1e6);
    std::printf("%12lld %11.4f %12.1f %11.4f %12.1f %6.1f%%\n", static_cast<long long>(n), kernel, kgbs, copy, cgbs,
                100.0 * kgbs / cgbs);
  }

  // ResNet-18, CIFAR variant as the reference recipe trains it (BatchNorm without affine).
  auto model = models::make_model("resnet18", models::ModelOptions{});
  model->to(Device::CUDA);
  std::vector<nn::ParamRef> params = model->parameters();
  const size_t count = params.size();
  std::vector<Tensor> s(count), g(count), m(count), v(count), x(count);
  std::vector<quant::StepTensors> tensors;
  int64_t weights = 0;
  for (size_t i = 0; i < count; ++i) {
    const Shape& shape = params[i].var.value().shape();
    s[i] = Tensor::uniform(shape, -1.f, 1.f, 10 + i, Device::CUDA);
    g[i] = Tensor::uniform(shape, -1.f, 1.f, 1000 + i, Device::CUDA);
    m[i] = Tensor::zeros(shape, DType::F32, Device::CUDA);
    v[i] = Tensor::full(shape, 1e-4f, Device::CUDA);
    x[i] = Tensor::empty(shape, DType::F32, Device::CUDA);
    tensors.push_back({&s[i], &g[i], &m[i], &v[i], &x[i]});
    weights += s[i].numel();
  }
  quant::StepArgs a;
  a.lr = 1e-3f;
  a.beta = a.beta_next = 1.02f;
  a.inv_bias1 = 10.f;
  a.inv_bias2 = 1000.f;
  const quant::Method method{quant::Rule::MdTanhS, 2};
  const float loop = median_ms([&] {
    for (size_t i = 0; i < count; ++i)
      kernels::quant_step(method.rule, quant::Dir::Adam, 2, a, s[i].data<float>(), g[i].data<float>(),
                          m[i].data<float>(), v[i].data<float>(), x[i].data<float>(), s[i].numel());
  });
  quant::MultiStep multi;
  const float one = median_ms([&] { multi.step(method, quant::Dir::Adam, a, tensors); });
  const int launches = static_cast<int>((count + kernels::kQuantMultiMax - 1) / kernels::kQuantMultiMax);
  const double bytes = 32.0 * static_cast<double>(weights);
  std::printf("\nResNet-18 (CIFAR) MD-tanh-S Adam step: %zu parameters, %lld weights, 32 bytes each; median of 20\n",
              count, static_cast<long long>(weights));
  std::printf("  per-tensor loop (%zu launches): %.4f ms, %.1f GB/s\n", count, loop, bytes / (loop * 1e6));
  std::printf("  multi-tensor    (%d launch%s):   %.4f ms, %.1f GB/s\n", launches, launches == 1 ? "" : "es", one,
              bytes / (one * 1e6));
  std::printf("  ratio per-tensor / multi-tensor: %.2fx\n", loop / one);
  return 0;
}

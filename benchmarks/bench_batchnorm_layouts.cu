// bench_batchnorm_layouts: a training BatchNorm + ReLU, forward and backward, on ResNet-18's CIFAR
// activation shapes, as the engine runs it today (NCHW f32, kernels/batchnorm.cu, plus the
// transposes each bf16 convolution around it pays: f32 NCHW -> bf16 NHWC for the next conv's
// input and its dy, bf16 NHWC -> f32 NCHW for the conv's output and dx) against the NHWC bf16
// BatchNorm (kernels/batchnorm_nhwc.cu, kernels::batch_norm_forward/backward_nhwc_bf16), which
// needs none of them. Also the time the bytes each version must move would take at the card's
// copy bandwidth (measured here with cudaMemcpy device to device).
//   bench_batchnorm_layouts [batch ...]        (default 128 512)
#include <cstdio>
#include <functional>
#include <vector>

#include "benchmarks/bench_common.h"
#include "engine/tensor.h"
#include "kernels/batchnorm.h"
#include "kernels/nhwc_bf16.h"

using namespace mdq;

namespace {

struct LayerShape {
  int64_t c, side;  // channels, H = W
};

// Device copy bandwidth in bytes/ms, from a 256 MiB device-to-device copy.
double copy_bytes_per_ms() {
  const int64_t n = int64_t{64} << 20;
  Tensor a = Tensor::zeros({n}, DType::F32, Device::CUDA), b = Tensor::zeros({n}, DType::F32, Device::CUDA);
  const float ms = event_ms_per_call(
      [&] { CUDA_CHECK(cudaMemcpyAsync(b.raw(), a.raw(), a.nbytes(), cudaMemcpyDeviceToDevice, cuda::stream())); }, 20);
  return 2.0 * static_cast<double>(a.nbytes()) / ms;  // read + write
}

// Mean ms of one call, after one call untimed (module loading, the allocator's first blocks).
float warm_ms_per_call(const std::function<void()>& fn, int reps) {
  fn();
  return event_ms_per_call(fn, reps);
}

void run(int64_t batch, const LayerShape& shape, double bw) {
  struct {
    int64_t c, hw;
  } s{shape.c, shape.side * shape.side};
  const int64_t rows = batch * s.hw, n = rows * s.c;
  Tensor x32 = Tensor::uniform({n}, -1.f, 3.f, 1, Device::CUDA), g32 = Tensor::uniform({n}, -1.f, 1.f, 2, Device::CUDA);
  Tensor y32 = Tensor::empty({n}, DType::F32, Device::CUDA), dx32 = Tensor::empty({n}, DType::F32, Device::CUDA);
  Tensor xb = Tensor::empty({n}, DType::BF16, Device::CUDA), gb = Tensor::empty({n}, DType::BF16, Device::CUDA);
  Tensor yb = Tensor::empty({n}, DType::BF16, Device::CUDA), dxb = Tensor::empty({n}, DType::BF16, Device::CUDA);
  kernels::nchw_f32_to_nhwc_bf16(x32.data<float>(), xb.data<uint16_t>(), batch, static_cast<int>(s.c), s.hw);
  kernels::nchw_f32_to_nhwc_bf16(g32.data<float>(), gb.data<uint16_t>(), batch, static_cast<int>(s.c), s.hw);
  Tensor mean = Tensor::empty({s.c}, DType::F32, Device::CUDA), invstd = Tensor::empty({s.c}, DType::F32, Device::CUDA);
  Tensor rm = Tensor::zeros({s.c}, DType::F32, Device::CUDA), rv = Tensor::full({s.c}, 1.f, Device::CUDA);
  Tensor sg = Tensor::empty({s.c}, DType::F32, Device::CUDA), sgx = Tensor::empty({s.c}, DType::F32, Device::CUDA);

  // ---- today: NCHW f32 BN+ReLU, and the four layout passes around the convolutions
  kernels::BatchNormForwardArgs f{};
  f.s = {batch, s.c, s.hw};
  f.training = true;
  f.momentum = 0.1f;
  f.eps = 1e-5f;
  f.x = x32.data<float>();
  f.running_mean = rm.data<float>();
  f.running_var = rv.data<float>();
  f.out = y32.data<float>();
  f.mean = mean.data<float>();
  f.invstd = invstd.data<float>();
  f.relu = true;
  kernels::BatchNormBackwardArgs b{};
  b.s = f.s;
  b.training = true;
  b.grad_out = g32.data<float>();
  b.x = x32.data<float>();
  b.mean = mean.data<float>();
  b.invstd = invstd.data<float>();
  b.sum_g = sg.data<float>();
  b.sum_gxhat = sgx.data<float>();
  b.grad_in = dx32.data<float>();
  b.relu = true;
  const int reps = 50;
  const float nchw_fwd = warm_ms_per_call([&] { kernels::batch_norm_forward_f32(f); }, reps);
  const float nchw_bwd = warm_ms_per_call([&] { kernels::batch_norm_backward_f32(b); }, reps);
  const float to_nhwc = warm_ms_per_call(
      [&] { kernels::nchw_f32_to_nhwc_bf16(x32.data<float>(), xb.data<uint16_t>(), batch, static_cast<int>(s.c), s.hw); },
      reps);
  const float to_nchw = warm_ms_per_call(
      [&] { kernels::nhwc_bf16_to_nchw_f32(xb.data<uint16_t>(), y32.data<float>(), batch, s.hw, static_cast<int>(s.c)); },
      reps);

  // ---- NHWC bf16 BN+ReLU
  kernels::BatchNormNhwcForwardArgs nf{};
  nf.rows = rows;
  nf.c = s.c;
  nf.training = true;
  nf.momentum = 0.1f;
  nf.eps = 1e-5f;
  nf.x = xb.data<uint16_t>();
  nf.running_mean = rm.data<float>();
  nf.running_var = rv.data<float>();
  nf.out = yb.data<uint16_t>();
  nf.mean = mean.data<float>();
  nf.invstd = invstd.data<float>();
  nf.relu = true;
  kernels::BatchNormNhwcBackwardArgs nb{};
  nb.rows = rows;
  nb.c = s.c;
  nb.training = true;
  nb.grad_out = gb.data<uint16_t>();
  nb.x = xb.data<uint16_t>();
  nb.mean = mean.data<float>();
  nb.invstd = invstd.data<float>();
  nb.sum_g = sg.data<float>();
  nb.sum_gxhat = sgx.data<float>();
  nb.grad_in = dxb.data<uint16_t>();
  nb.relu = true;
  const float nhwc_fwd = warm_ms_per_call([&] { kernels::batch_norm_forward_nhwc_bf16(nf); }, reps);
  const float nhwc_bwd = warm_ms_per_call([&] { kernels::batch_norm_backward_nhwc_bf16(nb); }, reps);

  // Bytes each must move at least: f32 forward reads x twice (statistics), reads it again and
  // writes out; backward reads g and x for the sums, then g and x again and writes dx. bf16 the same
  // at 2 bytes (the ReLU mask is recomputed from x, read anyway). Transposes: read + write.
  const double e = static_cast<double>(n);
  const double today_bytes = e * 4 * (4 + 5) + 2 * e * (4 + 2) + 2 * e * (2 + 4);
  const double nhwc_bytes = e * 2 * (4 + 5);
  const float today = nchw_fwd + nchw_bwd + 2 * to_nhwc + 2 * to_nchw, nhwc = nhwc_fwd + nhwc_bwd;
  std::printf("%5lld %4lld %3lldx%-3lld | %7.3f %7.3f %7.3f %7.3f %7.3f | %7.3f %7.3f %7.3f | %5.2fx | %6.3f %6.3f\n",
              static_cast<long long>(batch), static_cast<long long>(s.c), static_cast<long long>(shape.side),
              static_cast<long long>(shape.side), nchw_fwd, nchw_bwd, to_nhwc, to_nchw, today, nhwc_fwd, nhwc_bwd, nhwc,
              today / nhwc, today_bytes / bw, nhwc_bytes / bw);
}

}  // namespace

int main(int argc, char** argv) {
  if (!gpu_for_bench("bench_batchnorm_layouts")) return 0;
  const BenchArgs args = parse_bench_args(argc, argv, {128, 512});
  const double bw = copy_bytes_per_ms();
  std::printf("# bench_batchnorm_layouts on %s: training BN + ReLU, ms per call (mean of 50); copy bandwidth %.0f GB/s\n",
              cuda_device_name().c_str(), bw / 1e6);
  std::printf("# today = NCHW f32 BN fwd + bwd + 2 transposes to NHWC bf16 + 2 back (what a conv on each side costs)\n");
  std::printf("batch    C  HxW    | nchw fwd    bwd  ->nhwc  ->nchw   today | nhwc fwd    bwd   total | today/nhwc | at copy bw: today nhwc\n");
  const LayerShape shapes[] = {{64, 32}, {128, 16}, {256, 8}, {512, 4}};
  for (int batch : args.batches)
    for (const LayerShape& s : shapes) run(batch, s, bw);
  return 0;
}

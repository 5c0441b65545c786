// End-to-end ImageNet ResNet-18 inference (DESIGN.md E12, packed vs cuDNN) in three versions side by
// side, as images/s at batch 1, 32 and 256, with random weights (throughput only):
//   cuDNN bf16  every conv through cuDNN (NHWC, fastest algorithm found once per shape), folded
//               BatchNorm + ReLU and the residual add as bf16 elementwise passes, fc by cuBLAS;
//   W1A16       stem conv and fc as above, every other conv (3x3 and the 1x1 downsamples) on
//               packed binary weights with bf16 activations, BN + ReLU fused into the conv
//               epilogue; the residual add in bf16;
//   W1A1        stem conv and fc as above; both convs of a block and the downsample on the b1
//               tensor cores, the first conv writing packed signs for the second (SignPack),
//               the downsample f32 (Affine), the second adding the shortcut in f32 (Bi-Real-Net
//               style; no ReLU: sign is the activation) and packing the signs of the sum for
//               the next block in the same epilogue (binary_conv2d_residual).
// Also: a per-part time breakdown at the largest batch, and a check at batch 1 that the W1A16
// logits agree with cuDNN bf16 run on the same ±1 weights. Usage: bench_packed_resnet18 [batch ...].
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "benchmarks/bench_common.h"
#include "benchmarks/cudnn_conv.h"
#include "engine/cuda_context.h"
#include "engine/device.h"
#include "engine/packed/bitpack.h"
#include "engine/packed/packed_conv.h"
#include "kernels/nhwc_bf16.h"

using namespace mdq;

namespace {

constexpr int kImage = 224, kStemOut = 64, kFeatures = 512, kClasses = 1000;

// Median over 5 rounds of the mean time of one call, after a warm-up; a round lasts >= ~25 ms.
float median_ms(const std::function<void()>& fn) {
  for (int i = 0; i < 3; ++i) fn();
  const float once = event_ms_per_call(fn, 1);
  const int reps = std::clamp(static_cast<int>(std::ceil(25.f / std::max(once, 1e-3f))), 1, 500);
  std::vector<float> ms;
  for (int r = 0; r < 5; ++r) ms.push_back(event_ms_per_call(fn, reps));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// ---- the model: weights shared by the three versions, independent of the batch.
struct Conv {
  int C = 0, O = 0, K = 1, stride = 1, pad = 0;
  Tensor w_bf16;               // bf16 [O][K][K][C'] on the GPU: cuDNN's NHWC filter (C' >= C, zero padded)
  Tensor w_pm1_bf16;           // middle convs: the packed weights unpacked to ±1, same layout (the check)
  packed::PackedWeights bits;  // middle convs: sign(w) packed, on the GPU
  Tensor scale, shift;         // f32 [O] on the GPU: BatchNorm folded
  Tensor thresholds;           // middle convs: the sign of scale·d + shift as integer thresholds (W1A1)
};
struct Block {
  int H = 0;  // input height = width
  Conv conv1, conv2, down;
  bool has_down = false;
};
struct Model {
  int stem_channels = 3;  // 8 when cuDNN has no bf16 NHWC algorithm for 3 input channels
  Conv stem;
  std::vector<Block> blocks;
  Tensor fc_w;  // bf16 [1000][512] on the GPU, no bias
  size_t bytes_bf16 = 0, bytes_packed = 0;
};

// Latent weights ~ N(0, 1) have the same variance as their signs, so one BN scale ~ 1/sqrt(fan-in)
// keeps the activations O(1) in all versions (and in the ±1 check network).
Conv make_conv(int C, int O, int K, int stride, int pad, uint64_t seed, bool middle, int C_store) {
  Conv c;
  c.C = C, c.O = O, c.K = K, c.stride = stride, c.pad = pad;
  Tensor w = Tensor::normal({O, C, K, K}, 0.f, 1.f, seed);
  Tensor nhwc = packed::nchw_to_nhwc(w);  // [O][K][K][C]
  if (C_store > C) {
    Tensor padded = Tensor::zeros({O, K, K, C_store});
    for (int64_t p = 0; p < int64_t(O) * K * K; ++p)
      for (int ch = 0; ch < C; ++ch) padded.data<float>()[p * C_store + ch] = nhwc.data<float>()[p * C + ch];
    nhwc = padded;
  }
  c.w_bf16 = packed::to_bf16(nhwc).cuda();
  if (middle) {
    c.bits = packed::pack_binary_weights(w).to(Device::CUDA);
    c.w_pm1_bf16 = packed::to_bf16(packed::unpack_weights(c.bits)).cuda();
  }
  std::vector<float> scale = Tensor::uniform({O}, 0.5f, 1.5f, seed + 1).to_vector();
  for (float& s : scale) s /= std::sqrt(static_cast<float>(C * K * K));
  c.scale = Tensor::from_vector(scale, {O}, Device::CUDA);
  c.shift = Tensor::uniform({O}, -0.1f, 0.1f, seed + 2, Device::CUDA);
  if (middle) c.thresholds = packed::sign_thresholds(c.bits, c.scale, c.shift, Device::CUDA);  // once, at load
  return c;
}

Model build_model() {
  Model m;
  m.stem_channels = CudnnConv(32, 3, kImage, kImage, kStemOut, 7, 2, 3).found ? 3 : 8;
  m.stem = make_conv(3, kStemOut, 7, 2, 3, 1000, false, m.stem_channels);
  const size_t bn = 2 * sizeof(float);
  m.bytes_bf16 = m.bytes_packed = size_t(kStemOut) * 3 * 49 * 2 + kStemOut * bn;
  int C = kStemOut, H = kImage / 4;
  uint64_t seed = 2000;
  for (int stage = 0; stage < 4; ++stage) {
    const int O = kStemOut << stage;
    for (int i = 0; i < 2; ++i) {
      Block b;
      const int stride = stage > 0 && i == 0 ? 2 : 1;
      b.H = H;
      b.conv1 = make_conv(C, O, 3, stride, 1, seed += 10, true, C);
      b.conv2 = make_conv(O, O, 3, 1, 1, seed += 10, true, O);
      b.has_down = stride != 1 || C != O;
      if (b.has_down) b.down = make_conv(C, O, 1, stride, 0, seed += 10, true, C);
      for (const Conv* c : {&b.conv1, &b.conv2, &b.down}) {
        if (!c->bits.sign.defined()) continue;
        m.bytes_bf16 += size_t(c->O) * c->C * c->K * c->K * 2 + c->O * bn;
        m.bytes_packed += c->bits.sign.nbytes() + c->O * bn;
      }
      m.blocks.push_back(std::move(b));
      H = (H - 1) / stride + 1;
      C = O;
    }
  }
  m.fc_w = packed::to_bf16(Tensor::normal({kClasses, kFeatures}, 0.f, 1.f / std::sqrt(float(kFeatures)), 3000)).cuda();
  m.bytes_bf16 += size_t(kClasses) * kFeatures * 2;
  m.bytes_packed += size_t(kClasses) * kFeatures * 2;
  return m;
}

// ---- thin checked wrappers over kernels/nhwc_bf16.h
void affine_act(const Tensor& x, const Tensor* scale, const Tensor* shift, const Tensor* res, bool relu, Tensor& y) {
  MDQ_CHECK(x.dtype() == DType::BF16 && y.dtype() == DType::BF16 && x.numel() == y.numel() &&
                (!res || (res->dtype() == DType::BF16 && res->numel() == x.numel())),
            "affine_act: x " << x.describe() << ", y " << y.describe() << (res ? ", residual " + res->describe() : ""));
  kernels::affine_act_nhwc_bf16(x.data<uint16_t>(), scale ? scale->data<float>() : nullptr,
                                shift ? shift->data<float>() : nullptr, res ? res->data<uint16_t>() : nullptr, relu,
                                y.data<uint16_t>(), x.numel() / x.dim(-1), static_cast<int>(x.dim(-1)));
}

enum class Version { CudnnBF16, W1A16, W1A1 };
const char* name(Version v) { return v == Version::CudnnBF16 ? "cuDNN bf16" : v == Version::W1A16 ? "W1A16" : "W1A1"; }

// Parts of a forward pass, so each can be timed alone (a skipped part leaves its outputs from an
// earlier full pass in place).
enum Part : unsigned { kStem = 1, kMiddle = 2, kElementwise = 4, kFc = 8, kAll = 15 };

// One version of the network at one batch size, every activation buffer allocated up front (the
// packed:: calls allocate their outputs through the caching allocator, which reuses blocks).
class Net {
 public:
  Net(const Model& m, Version v, int N, bool pm1_weights = false) : m_(m), v_(v), N_(N), pm1_(pm1_weights) {
    input = packed::to_bf16(Tensor::uniform({N, kImage, kImage, m.stem_channels}, -1.f, 1.f, 42, Device::CUDA));
    stem_conv_ = std::make_unique<CudnnConv>(N, m.stem_channels, kImage, kImage, kStemOut, 7, 2, 3);
    const int S = stem_conv_->OH;
    stem_raw_ = Tensor::empty({N, S, S, kStemOut}, DType::BF16, Device::CUDA);
    stem_act_ = Tensor::empty({N, S, S, kStemOut}, DType::BF16, Device::CUDA);
    const int P = ops::window_output_size(S, 3, 2, 1);
    pool_ = Tensor::empty({N, P, P, kStemOut}, DType::BF16, Device::CUDA);
    for (const Block& b : m.blocks) {
      Run r;
      r.b = &b;
      const int C = b.conv1.C, O = b.conv1.O, s = b.conv1.stride, OH = (b.H - 1) / s + 1;
      const Shape out{N, OH, OH, O};
      if (v == Version::CudnnBF16) {
        r.c1 = std::make_unique<CudnnConv>(N, C, b.H, b.H, O, 3, s, 1);
        r.c2 = std::make_unique<CudnnConv>(N, O, OH, OH, O, 3, 1, 1);
        if (b.has_down) r.cd = std::make_unique<CudnnConv>(N, C, b.H, b.H, O, 1, s, 0);
        for (Tensor* t : {&r.t1, &r.h, &r.t2, &r.td, &r.sc}) *t = Tensor::empty(out, DType::BF16, Device::CUDA);
      }
      r.out = Tensor::empty(out, v == Version::W1A1 ? DType::F32 : DType::BF16, Device::CUDA);
      runs_.push_back(std::move(r));
    }
    pooled_ = Tensor::empty({N, kFeatures}, DType::BF16, Device::CUDA);
    logits = Tensor::empty({N, kClasses}, DType::F32, Device::CUDA);
  }

  void forward(unsigned parts = kAll) {
    const Conv& stem = m_.stem;
    if (parts & kStem) stem_conv_->run(input, stem.w_bf16, stem_raw_);
    if (parts & kElementwise) {
      affine_act(stem_raw_, &stem.scale, &stem.shift, nullptr, true, stem_act_);
      kernels::maxpool_nhwc_bf16(stem_act_.data<uint16_t>(), pool_.data<uint16_t>(), N_,
                                 static_cast<int>(stem_act_.dim(1)), static_cast<int>(stem_act_.dim(2)), kStemOut, 3, 2, 1);
    }
    const Tensor* x = &pool_;
    const Tensor* x_bits = nullptr;  // W1A1: the previous block's output signs
    for (Run& r : runs_) {
      if (v_ == Version::CudnnBF16) block_cudnn(r, *x, parts);
      if (v_ == Version::W1A16) block_w1a16(r, *x, parts);
      if (v_ == Version::W1A1) block_w1a1(r, *x, x_bits, parts);
      x = &r.out;
      x_bits = &r.out_bits;
    }
    if (parts & kElementwise) {
      const int HW = static_cast<int>(x->dim(1) * x->dim(2));
      if (x->dtype() == DType::F32)
        kernels::avgpool_nhwc_f32_to_bf16(x->data<float>(), pooled_.data<uint16_t>(), N_, HW, kFeatures);
      else
        kernels::avgpool_nhwc_bf16(x->data<uint16_t>(), pooled_.data<uint16_t>(), N_, HW, kFeatures);
    }
    if (parts & kFc) {
      // Row-major logits[N][1000] = pooled[N][512] fc_w[1000][512]^T, i.e. column-major
      // logits^T (1000 x N) = fc_w^T-view (op T) x pooled^T-view; bf16 in, f32 accumulate and out.
      const float one = 1.f, zero = 0.f;
      CUBLAS_CHECK(cublasGemmEx(cuda::cublas(), CUBLAS_OP_T, CUBLAS_OP_N, kClasses, N_, kFeatures, &one,
                                m_.fc_w.raw(), CUDA_R_16BF, kFeatures, pooled_.raw(), CUDA_R_16BF, kFeatures, &zero,
                                logits.raw(), CUDA_R_32F, kClasses, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
  }

  Tensor input;   // bf16 [N][224][224][stem_channels]
  Tensor logits;  // f32 [N][1000]

 private:
  struct Run {
    const Block* b = nullptr;
    std::unique_ptr<CudnnConv> c1, c2, cd;
    Tensor t1, h, t2, td, sc;  // cuDNN: raw conv outputs and their BN'd versions; packed: conv outputs
    Tensor xb, hb, x32;        // W1A1: packed block input, packed conv1 output, f32 copy of a bf16 input
    Tensor out, out_bits;      // the block's output (bf16; f32 for W1A1) and, for W1A1, its signs packed
  };
  const Tensor& w(const Conv& c) const { return pm1_ ? c.w_pm1_bf16 : c.w_bf16; }

  // relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut), BN and the add as elementwise passes.
  void block_cudnn(Run& r, const Tensor& x, unsigned parts) {
    const Block& b = *r.b;
    const bool mid = parts & kMiddle, elem = parts & kElementwise;
    if (mid) r.c1->run(x, w(b.conv1), r.t1);
    if (elem) affine_act(r.t1, &b.conv1.scale, &b.conv1.shift, nullptr, true, r.h);
    if (mid) r.c2->run(r.h, w(b.conv2), r.t2);
    if (b.has_down) {
      if (mid) r.cd->run(x, w(b.down), r.td);
      if (elem) affine_act(r.td, &b.down.scale, &b.down.shift, nullptr, false, r.sc);
    }
    if (elem) affine_act(r.t2, &b.conv2.scale, &b.conv2.shift, b.has_down ? &r.sc : &x, true, r.out);
  }

  // The same block with packed binary weights, BN (+ ReLU) in the conv epilogue; bf16 add + ReLU.
  void block_w1a16(Run& r, const Tensor& x, unsigned parts) {
    const Block& b = *r.b;
    if (parts & kMiddle) {
      const auto bf = [](const Conv& c, bool relu) { return packed::FloatOutput{c.scale, c.shift, relu, DType::BF16}; };
      r.h = packed::w1a16_conv2d(x, b.conv1.bits, {b.conv1.stride, 1}, bf(b.conv1, true));
      r.t2 = packed::w1a16_conv2d(r.h, b.conv2.bits, {1, 1}, bf(b.conv2, false));
      if (b.has_down) r.sc = packed::w1a16_conv2d(x, b.down.bits, {b.down.stride, 0}, bf(b.down, false));
    }
    if (parts & kElementwise) affine_act(r.t2, nullptr, nullptr, b.has_down ? &r.sc : &x, true, r.out);
  }

  // Binary block: out = bn2(conv2(sign(bn1(conv1(sign x))))) + shortcut, shortcut = x or
  // bn_d(conv_d(sign x)), added in f32 by conv2's epilogue, which also packs the signs of out
  // for the next block (binary_conv2d_residual); no ReLU (the next block takes the sign of out).
  // Only the first block packs its (bf16, max-pooled) input and widens it to f32.
  void block_w1a1(Run& r, const Tensor& x, const Tensor* x_bits, unsigned parts) {
    const Block& b = *r.b;
    using packed::BinaryOutputMode;
    if (!x_bits && (parts & kElementwise)) {
      r.xb = packed::pack_signs(x);
      if (!b.has_down) r.x32 = packed::to_f32(x);
    }
    const Tensor& xb = x_bits ? *x_bits : r.xb;
    if (parts & kMiddle) {
      r.hb = packed::binary_conv2d(xb, b.conv1.bits, {b.conv1.stride, 1},
                                   {BinaryOutputMode::SignPack, b.conv1.scale, b.conv1.shift, b.conv1.thresholds});
      if (b.has_down)
        r.sc = packed::binary_conv2d(xb, b.down.bits, {b.down.stride, 0},
                                     {BinaryOutputMode::Affine, b.down.scale, b.down.shift});
      const Tensor& shortcut = b.has_down ? r.sc : x_bits ? x : r.x32;
      packed::ResidualOutput o = packed::binary_conv2d_residual(r.hb, b.conv2.bits, {1, 1}, b.conv2.scale,
                                                                b.conv2.shift, shortcut);
      r.out = o.y;
      r.out_bits = o.bits;
    }
  }

  const Model& m_;
  Version v_;
  int N_;
  bool pm1_;
  std::unique_ptr<CudnnConv> stem_conv_;
  Tensor stem_raw_, stem_act_, pool_, pooled_;
  std::vector<Run> runs_;
};

bool all_finite(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

// W1A16 logits vs cuDNN bf16 on the unpacked ±1 weights (same stem, fc, BN, input), batch 1.
void check(const Model& m) {
  Net ref(m, Version::CudnnBF16, 1, /*pm1_weights=*/true), w1a16(m, Version::W1A16, 1), w1a1(m, Version::W1A1, 1);
  w1a16.input.copy_from(ref.input);
  ref.forward();
  w1a16.forward();
  w1a1.forward();
  const std::vector<float> a = w1a16.logits.to_vector(), b = ref.logits.to_vector(), c = w1a1.logits.to_vector();
  double max_diff = 0, max_ref = 0, max_rel = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(double(a[i]) - b[i]);
    max_diff = std::max(max_diff, d);
    max_ref = std::max(max_ref, std::fabs(double(b[i])));
    max_rel = std::max(max_rel, d / std::max(std::fabs(double(b[i])), 1e-3));
  }
  const double rel = max_diff / std::max(max_ref, 1e-30);
  std::printf("check, batch 1: W1A16 logits vs cuDNN bf16 on the same +-1 weights: max |diff| %.4g, max |logit| %.4g,\n"
              "  max |diff| / max |logit| = %.3g (%s; loose bf16 tolerance 5e-2), max elementwise rel diff %.3g%s\n"
              "  W1A1 logits all finite: %s\n\n",
              max_diff, max_ref, rel, rel <= 5e-2 && all_finite(a) ? "OK" : "LARGE", max_rel,
              all_finite(a) && all_finite(b) ? "" : " (NON-FINITE values)", all_finite(c) ? "yes" : "NO");
}

}  // namespace

int main(int argc, char** argv) {
  if (!gpu_for_bench("bench_packed_resnet18")) return 0;
  const std::vector<int> batches = parse_bench_args(argc, argv, {1, 32, 256}).batches;
  const int breakdown_batch = *std::max_element(batches.begin(), batches.end());

  const Model m = build_model();
  std::printf("GPU: %s\n", cuda_device_name().c_str());
  std::printf("ResNet-18, ImageNet 224x224x3 (stem conv7x7/2 + maxpool3/2, 4 stages x 2 BasicBlocks, 1x1/2\n"
              "downsamples, avgpool, fc 512->1000), random weights, BN folded into per-channel scale/shift.\n"
              "Stem conv and fc are cuDNN/cuBLAS bf16 in all versions%s. Weights = conv/fc weights (bf16, or\n"
              "packed sign bits for the middle convs) + folded BN scale/shift f32; tap popcounts not counted.\n"
              "ms = median of 5 rounds of the mean over many forward passes (CUDA events, one stream).\n\n",
              m.stem_channels == 3 ? "" : " (stem input padded to 8 channels: cuDNN had no bf16 NHWC algorithm for 3)");
  check(m);

  std::printf("%5s  %-10s | %9s | %10s | %8s | %10s\n", "batch", "version", "ms/batch", "images/s", "x cuDNN",
              "weights MB");
  std::vector<std::string> breakdown;
  for (int N : batches) {
    float base_ms = 0;
    for (Version v : {Version::CudnnBF16, Version::W1A16, Version::W1A1}) {
      Net net(m, v, N);
      const float ms = median_ms([&] { net.forward(); });
      if (v == Version::CudnnBF16) base_ms = ms;
      const size_t bytes = v == Version::CudnnBF16 ? m.bytes_bf16 : m.bytes_packed;
      std::printf("%5d  %-10s | %9.3f | %10.1f | %7.2fx | %10.2f\n", N, name(v), ms, N * 1e3 / ms, base_ms / ms,
                  bytes / 1e6);
      std::fflush(stdout);
      if (N != breakdown_batch) continue;
      float part[4];
      const unsigned parts[4] = {kStem, kMiddle, kElementwise, kFc};
      for (int p = 0; p < 4; ++p) part[p] = median_ms([&] { net.forward(parts[p]); });
      char line[256];
      std::snprintf(line, sizeof line, "%-10s | %8.3f | %8.3f %4.0f%% | %8.3f %4.0f%% | %8.3f %4.0f%% | %8.3f %4.0f%% | %8.3f",
                    name(v), ms, part[0], 100 * part[0] / ms, part[1], 100 * part[1] / ms, part[2],
                    100 * part[2] / ms, part[3], 100 * part[3] / ms, part[0] + part[1] + part[2] + part[3]);
      breakdown.push_back(line);
    }
  }
  std::printf("\nBreakdown at batch %d, ms per batch, each part timed alone (%% of the full pass):\n"
              "  stem = cuDNN conv7x7; middle convs = all 3x3 and 1x1 convs (W1A16/W1A1: BN, ReLU, sign\n"
              "  packing of conv1's output fused in); elementwise = BN/ReLU/residual passes, max and avg pool,\n"
              "  for W1A1 the first block's input packing (the residual adds are in the conv epilogue);\n"
              "  fc = cuBLAS.\n", breakdown_batch);
  std::printf("%-10s | %8s | %14s | %14s | %14s | %14s | %8s\n", "version", "full", "stem", "middle convs",
              "elementwise", "fc", "sum");
  for (const std::string& l : breakdown) std::printf("%s\n", l.c_str());
  return 0;
}

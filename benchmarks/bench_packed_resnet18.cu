// End-to-end ImageNet ResNet-18 inference (docs/DESIGN.md E12) as images/s at batch 1, 32 and
// 256: what `mdq-infer --engine packed` runs, against a hand-built cuDNN bf16 baseline on the
// same weights. The network is models::make_resnet18 (ImageNet variant, 1000 classes) with
// random parameters rounded to ±1 (random signs, so every conv and linear layer can run
// packed) and BatchNorm running statistics that keep the activations O(1); only throughput
// and agreement are measured.
//   cuDNN bf16   every conv through cuDNN (NHWC, fastest algorithm found once per shape), folded
//                BatchNorm + ReLU and the residual add as bf16 elementwise passes, the fc by
//                cuBLAS (+ bias): the baseline, hand-built from the model's weights;
//   W1A16        infer::lower on the float-activation model with --packed-precision bf16: every
//                conv (the 7x7 stem too) and the fc on packed weights with bf16 activations, BN
//                + ReLU fused into the conv epilogue, the residual sums in NHWC bf16;
//   W1A16 split  the same with mdq-infer's default precision (f32 activations fed as bf16 hi +
//                lo against weights packed twice: twice the K work, logits within ~1e-5);
//   W1A1         infer::lower on the sign-activation model (act_bits = 1): the stem conv + BN
//                on the float engine (f32: its sign must be the float engine's), the signs
//                packed and max-pooled as bits, both convs of every block and the downsamples
//                on the b1 tensor cores with the signs of the sum in the second conv's epilogue
//                (binary_conv2d_skip_signs; in a downsampling block binary_conv2d_shortcut_signs,
//                which on Hopper runs the 1x1 shortcut in the second conv's kernel), then the
//                float engine's average pool and the fc on W1A16.
//   W1A16 stem16 / W1A1 stem16   the same as W1A16 / W1A1 (split) with LowerOptions::stem Bf16:
//                the stem as one step (infer::Bf16Stem) that hands NHWC on, so the max pool
//                (W1A16) or the sign packing and the bit max pool (W1A1) run on NHWC: no NCHW f32
//                between the images and the first block. By default that step is the direct
//                kernel (packed::stem_conv_nhwc: f32 NCHW images in, conv + folded BN (+ ReLU)
//                with f32 sums, NHWC bf16 or f32 out, one pass); with MDQ_STEM_DIRECT=0 (or a
//                stem it does not take) the three passes before it: the images to NHWC bf16
//                padded to 8 channels, cuDNN's bf16 tensor cores, the folded BN (+ ReLU) as one
//                bf16 affine pass. The three-pass stem rounds the images to bf16, so W1A1's stem
//                signs may flip at a near-tie: the check below prints its agreement. In W1A1
//                stem16 the direct stem also takes the sign after it (Bf16Stem::signs): it writes
//                the packed bits (packed::stem_conv_signs, 8 bytes a pixel) instead of the f32
//                map (256) that Binarize read back; with MDQ_STEM_DIRECT=0 the step runs the
//                three passes and packs their signs.
//   W1A16 tc stem  W1A16 stem16 with LowerOptions::stem TensorCores: the stem + BN + ReLU on tensor
//                cores from split-bf16 images and weights, bf16 NHWC out (mdq-infer --engine packed
//                --packed-precision bf16 on a float-activation network).
//   W1A1 tc stem the same as W1A1 with LowerOptions::stem TensorCores, mdq-infer's plan: the
//                stem and its sign one step (Bf16Stem::signs) as in W1A1 stem16, its sums on
//                tensor cores from images and weights split into bf16 hi + lo, three MMAs a
//                product (packed::stem_conv_signs with StemArithmetic::SplitBf16TensorCores,
//                kernels/stem_conv_mma.cu; on a GPU below compute capability 8.0 the direct
//                kernel, and the version says so).
//   W1A1 tc-bf16 the same with LowerOptions::stem TensorCoresBf16: bf16-rounded images and
//                weights, one MMA a product (StemArithmetic::Bf16TensorCores): fastest, but its
//                stem signs flip at near-ties (the check below prints its agreement).
//   W1A1 graph / W1A1 s16 graph / W1A1 tc graph   the W1A1 plans' forward of the batch captured
//                once as a CUDA graph (engine/cuda_graph.h) after eager runs, timed as replays:
//                what launch overhead costs the eager plan. "W1A1 tc graph" is what mdq-infer
//                --engine packed runs by default (engine/graphed_forward.h: two eager batches,
//                then replays; --cuda-graph off runs "W1A1 tc stem").
// Each run starts from f32 NCHW images on the GPU (the plans' layout change included) and ends
// in f32 logits. Also: a check at batch 8 that W1A16 agrees with cuDNN bf16 on the same ±1
// weights and that the plans agree with the float engine (what mdq-infer --agree counts), a
// per-part time breakdown at the largest batch, and the W1A1 plans' steps one by one at that
// batch (the stem16 plan's stem both ways: direct and MDQ_STEM_DIRECT=0; its fused stem also as
// the two steps it replaced, the direct stem's f32 map and Binarize, and on tensor cores on the
// same inputs, signs and bf16 forms, with how many sign bits differ from the direct kernel's).
// Usage: bench_packed_resnet18 [batch ...].
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
#include "common/scoped_env.h"
#include "benchmarks/cudnn_conv.h"
#include "engine/autograd.h"
#include "engine/cuda_graph.h"
#include "models/random_rounded.h"
#include "kernels/cuda_common.h"
#include "engine/device.h"
#include "engine/infer/fold.h"
#include "engine/infer/lower.h"
#include "engine/infer/steps.h"
#include "engine/nn/conv2d.h"
#include "engine/nn/linear.h"
#include "engine/nn/residual.h"
#include "engine/packed/bitpack.h"
#include "engine/packed/nhwc.h"
#include "engine/packed/stem_conv.h"
#include "kernels/nhwc_bf16.h"
#include "models/model_zoo.h"

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

// ---- the network

// models::make_resnet18, ImageNet variant, on the GPU in eval mode, every parameter a random
// sign and BatchNorm statistics that keep the activations O(1) (models::rounded_model). The same
// seed for both activation kinds: the float and the sign model hold the same values.
std::shared_ptr<nn::Module> make_net(int act_bits) {
  models::ModelOptions o;
  o.num_classes = kClasses, o.in_channels = 3, o.image_size = kImage, o.act_bits = act_bits, o.seed = 1;
  auto net = models::rounded_model("resnet18", o, 2, 100);
  net->to(Device::CUDA);
  return net;
}

nn::Module& child(nn::Module& m, const std::string& name) {
  for (const auto& [n, c] : m.children())
    if (n == name) return *c;
  MDQ_FAIL("bench_packed_resnet18: no child '" << name << "'");
}
template <class T>
T& child(nn::Module& m, const std::string& name) {
  return dynamic_cast<T&>(child(m, name));
}

// ---- the cuDNN bf16 baseline, hand-built from the float model's weights

struct Conv {
  int C = 0, O = 0, K = 1, stride = 1, pad = 0;
  Tensor w_bf16;        // bf16 [O][K][K][C'] on the GPU: cuDNN's NHWC filter (C' >= C, zero padded)
  Tensor scale, shift;  // f32 [O] on the GPU: the BatchNorm after it, folded
};
struct Block {
  int H = 0;  // input height = width
  Conv conv1, conv2, down;
  bool has_down = false;
};
struct Baseline {
  int stem_channels = 3;  // 8 when cuDNN has no bf16 NHWC algorithm for 3 input channels
  Conv stem;
  std::vector<Block> blocks;
  Tensor fc_w, fc_b;  // bf16 [1000][512], f32 [1000] on the GPU
  size_t bytes = 0;   // weights (bf16) + folded BN and the fc bias (f32)
};

Conv make_conv(nn::Conv2d& layer, nn::BatchNorm2d& bn, int C_store, size_t& bytes) {
  const Tensor w = layer.weight().value().cpu();
  Conv c;
  c.O = static_cast<int>(w.dim(0)), c.C = static_cast<int>(w.dim(1)), c.K = static_cast<int>(w.dim(2));
  c.stride = static_cast<int>(layer.params().stride), c.pad = static_cast<int>(layer.params().padding);
  Tensor nhwc = packed::to_nhwc(w, DType::F32);  // [O][K][K][C]
  if (C_store > c.C) {
    Tensor padded = Tensor::zeros({c.O, c.K, c.K, C_store});
    for (int64_t p = 0; p < int64_t(c.O) * c.K * c.K; ++p)
      for (int ch = 0; ch < c.C; ++ch) padded.data<float>()[p * C_store + ch] = nhwc.data<float>()[p * c.C + ch];
    nhwc = padded;
  }
  c.w_bf16 = packed::to_bf16(nhwc).cuda();
  const infer::FoldedAffine f = infer::fold_batchnorm(Tensor(), &bn, c.O);
  c.scale = f.scale.cuda();
  c.shift = f.shift.cuda();
  bytes += w.numel() * 2 + c.O * 2 * sizeof(float);
  return c;
}

Baseline make_baseline(nn::Module& net) {
  Baseline m;
  m.stem_channels = CudnnConv(32, 3, kImage, kImage, kStemOut, 7, 2, 3).found ? 3 : 8;
  nn::Module& stem = child(net, "0");
  m.stem = make_conv(child<nn::Conv2d>(stem, "0"), child<nn::BatchNorm2d>(stem, "1"), m.stem_channels, m.bytes);
  int H = kImage / 4;
  for (int stage = 1; stage <= 4; ++stage)
    for (int i = 0; i < 2; ++i) {
      auto& r = child<nn::Residual>(child(net, std::to_string(stage)), std::to_string(i));
      Block b;
      b.H = H;
      b.conv1 = make_conv(child<nn::Conv2d>(r.body(), "0"), child<nn::BatchNorm2d>(r.body(), "1"), 0, m.bytes);
      b.conv2 = make_conv(child<nn::Conv2d>(r.body(), "3"), child<nn::BatchNorm2d>(r.body(), "4"), 0, m.bytes);
      b.has_down = r.shortcut() != nullptr;
      if (b.has_down)
        b.down = make_conv(child<nn::Conv2d>(*r.shortcut(), "0"), child<nn::BatchNorm2d>(*r.shortcut(), "1"), 0,
                           m.bytes);
      H = (H - 1) / b.conv1.stride + 1;
      m.blocks.push_back(std::move(b));
    }
  auto& fc = child<nn::Linear>(net, "6");
  m.fc_w = packed::to_bf16(fc.weight().value().cpu()).cuda();
  m.fc_b = fc.bias().value().cuda();
  m.bytes += size_t(kClasses) * kFeatures * 2 + kClasses * sizeof(float);
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

// Parts of a forward pass, so each can be timed alone (a skipped part leaves its outputs from an
// earlier full pass in place): stem conv; blocks (their convs and BN/ReLU/add passes); the rest
// (stem BN + ReLU, max and average pool); fc.
enum Part : unsigned { kStem = 1, kBlocks = 2, kRest = 4, kFc = 8, kAll = 15 };

// The baseline at one batch size, every activation buffer allocated up front.
class CudnnNet {
 public:
  CudnnNet(const Baseline& m, int N) : m_(m), N_(N) {
    stem_conv_ = std::make_unique<CudnnConv>(N, m.stem_channels, kImage, kImage, kStemOut, 7, 2, 3);
    const int S = stem_conv_->OH;
    input = Tensor::empty({N, kImage, kImage, m.stem_channels}, DType::BF16, Device::CUDA);
    stem_raw_ = Tensor::empty({N, S, S, kStemOut}, DType::BF16, Device::CUDA);
    stem_act_ = Tensor::empty({N, S, S, kStemOut}, DType::BF16, Device::CUDA);
    const int P = ops::window_output_size(S, 3, 2, 1);
    pool_ = Tensor::empty({N, P, P, kStemOut}, DType::BF16, Device::CUDA);
    for (const Block& b : m.blocks) {
      Run r;
      r.b = &b;
      const int C = b.conv1.C, O = b.conv1.O, s = b.conv1.stride, OH = (b.H - 1) / s + 1;
      r.c1 = std::make_unique<CudnnConv>(N, C, b.H, b.H, O, 3, s, 1);
      r.c2 = std::make_unique<CudnnConv>(N, O, OH, OH, O, 3, 1, 1);
      if (b.has_down) r.cd = std::make_unique<CudnnConv>(N, C, b.H, b.H, O, 1, s, 0);
      for (Tensor* t : {&r.t1, &r.h, &r.t2, &r.td, &r.sc, &r.out})
        *t = Tensor::empty({N, OH, OH, O}, DType::BF16, Device::CUDA);
      runs_.push_back(std::move(r));
    }
    pooled_ = Tensor::empty({N, kFeatures}, DType::BF16, Device::CUDA);
    logits = Tensor::empty({N, kClasses}, DType::F32, Device::CUDA);
  }

  // images f32 NCHW [N][3][224][224] -> input (bf16 NHWC, channels zero-padded to stem_channels).
  void set_input(const Tensor& images) {
    Tensor x = packed::to_nhwc(images, DType::BF16);
    if (m_.stem_channels != 3) {
      Tensor p = Tensor::zeros({N_, kImage, kImage, m_.stem_channels}, DType::BF16);
      const Tensor h = x.cpu();
      for (int64_t i = 0; i < int64_t(N_) * kImage * kImage; ++i)
        for (int c = 0; c < 3; ++c) p.data<uint16_t>()[i * m_.stem_channels + c] = h.data<uint16_t>()[i * 3 + c];
      x = p.cuda();
    }
    input.copy_from(x);
  }

  void forward(unsigned parts = kAll) {
    const Conv& stem = m_.stem;
    if (parts & kStem) stem_conv_->run(input, stem.w_bf16, stem_raw_);
    if (parts & kRest) {
      affine_act(stem_raw_, &stem.scale, &stem.shift, nullptr, true, stem_act_);
      const int S = static_cast<int>(stem_act_.dim(1));
      kernels::maxpool_nhwc_bf16(stem_act_.data<uint16_t>(), pool_.data<uint16_t>(), N_, S, S, kStemOut, 3, 2, 1);
    }
    const Tensor* x = &pool_;
    for (Run& r : runs_) {
      if (parts & kBlocks) block(r, *x);
      x = &r.out;
    }
    if (parts & kRest)
      kernels::avgpool_nhwc_bf16(x->data<uint16_t>(), pooled_.data<uint16_t>(), N_,
                                 static_cast<int>(x->dim(1) * x->dim(2)), kFeatures);
    if (parts & kFc) {
      // Row-major logits[N][1000] = pooled[N][512] fc_w[1000][512]^T, i.e. column-major
      // logits^T (1000 x N) = fc_w^T-view (op T) x pooled^T-view; bf16 in, f32 accumulate and out.
      const float one = 1.f, zero = 0.f;
      CUBLAS_CHECK(cublasGemmEx(cuda::cublas(), CUBLAS_OP_T, CUBLAS_OP_N, kClasses, N_, kFeatures, &one,
                                m_.fc_w.raw(), CUDA_R_16BF, kFeatures, pooled_.raw(), CUDA_R_16BF, kFeatures, &zero,
                                logits.raw(), CUDA_R_32F, kClasses, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      kernels::affine_act_nhwc<float>(logits.data<float>(), nullptr, m_.fc_b.data<float>(), nullptr, false,
                                      logits.data<float>(), N_, kClasses);
    }
  }

  Tensor input;   // bf16 [N][224][224][stem_channels]
  Tensor logits;  // f32 [N][1000]

 private:
  struct Run {
    const Block* b = nullptr;
    std::unique_ptr<CudnnConv> c1, c2, cd;
    Tensor t1, h, t2, td, sc, out;  // raw conv outputs, their BN'd versions, the block's output
  };

  // relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut), BN and the add as elementwise passes.
  void block(Run& r, const Tensor& x) {
    const Block& b = *r.b;
    r.c1->run(x, b.conv1.w_bf16, r.t1);
    affine_act(r.t1, &b.conv1.scale, &b.conv1.shift, nullptr, true, r.h);
    r.c2->run(r.h, b.conv2.w_bf16, r.t2);
    if (b.has_down) {
      r.cd->run(x, b.down.w_bf16, r.td);
      affine_act(r.td, &b.down.scale, &b.down.shift, nullptr, false, r.sc);
    }
    affine_act(r.t2, &b.conv2.scale, &b.conv2.shift, b.has_down ? &r.sc : &x, true, r.out);
  }

  const Baseline& m_;
  int N_;
  std::unique_ptr<CudnnConv> stem_conv_;
  Tensor stem_raw_, stem_act_, pool_, pooled_;
  std::vector<Run> runs_;
};

// ---- the lowered versions

enum class Version {
  CudnnBF16, W1A16, W1A16Split, W1A1, W1A16Stem, W1A16Tc, W1A1Stem, W1A1Tc, W1A1TcBf16, W1A1Graph, W1A1StemGraph,
  W1A1TcGraph
};
const char* name(Version v) {
  switch (v) {
    case Version::CudnnBF16: return "cuDNN bf16";
    case Version::W1A16: return "W1A16";
    case Version::W1A16Split: return "W1A16 split";
    case Version::W1A1: return "W1A1";
    case Version::W1A16Stem: return "W1A16 stem16";
    case Version::W1A16Tc: return "W1A16 tc stem";
    case Version::W1A1Stem: return "W1A1 stem16";
    case Version::W1A1Tc: return "W1A1 tc stem";
    case Version::W1A1TcBf16: return "W1A1 tc-bf16";
    case Version::W1A1Graph: return "W1A1 graph";
    case Version::W1A1StemGraph: return "W1A1 s16 graph";
    case Version::W1A1TcGraph: return "W1A1 tc graph";
  }
  return "";
}

std::unique_ptr<infer::Plan> lower(nn::Module& net, infer::PackedPrecision precision,
                                   infer::StemPath stem = infer::StemPath::Float) {
  infer::LowerOptions options{Device::CUDA, precision};
  options.stem = stem;
  std::string why;
  auto plan = infer::lower(net, options, &why);
  MDQ_CHECK(plan, "bench_packed_resnet18: the lowering refused ResNet-18: " << why);
  return plan;
}

// A step timed alone (median_ms) on `in`, the input it had in a full pass.
float time_alone(const infer::Step& step, const infer::Activation& in) {
  return median_ms([&] {
    infer::Activation t = in;
    step.run(t);
  });
}

// The plan run on `images` step by step: `use` gets each top-level step, its input, its time
// alone and the activation after it.
using TimedStep = std::function<void(const infer::Step&, const infer::Activation& in, float ms, const infer::Activation& out)>;
void for_each_timed_step(const infer::Plan& plan, const Tensor& images, const TimedStep& use) {
  infer::Activation a{images};
  for (const auto& step : plan.steps()) {
    const infer::Activation in = a;
    step->run(a);
    use(*step, in, time_alone(*step, in), a);
  }
}

// The breakdown's parts for a plan: each top-level step timed alone on the input it had in a
// full pass. The first conv is the stem, residual blocks are blocks, the last linear the fc,
// everything else (layout changes, BN, sign packing, pools) the rest.
void time_steps(const infer::Plan& plan, const Tensor& images, float (&part)[4]) {
  std::fill(part, part + 4, 0.f);
  bool stem_seen = false;
  for_each_timed_step(plan, images, [&](const infer::Step& step, const infer::Activation&, float ms,
                                        const infer::Activation&) {
    const auto* w1a16 = dynamic_cast<const infer::W1A16Layer*>(&step);
    const bool conv = dynamic_cast<const infer::FloatConv*>(&step) || dynamic_cast<const infer::Bf16Stem*>(&step) ||
                      (w1a16 && !w1a16->linear);
    const bool block = dynamic_cast<const infer::ResidualSum*>(&step) || dynamic_cast<const infer::BinaryBlock*>(&step);
    const bool fc = dynamic_cast<const infer::FloatLinear*>(&step) || (w1a16 && w1a16->linear);
    const int p = conv && !stem_seen ? 0 : block ? 1 : fc ? 3 : 2;
    stem_seen |= conv;
    part[p] += ms;
  });
}

// A step's kind and what tells it apart, for the step listing.
std::string describe(const infer::Step& step) {
  using namespace infer;
  auto form = [](Form f) { return f == Form::Float ? "Float" : f == Form::Dense ? "Dense" : "Bits"; };
  if (auto* r = dynamic_cast<const Relayout*>(&step)) return std::string("relayout ") + form(r->from) + " -> " + form(r->to);
  if (auto* b = dynamic_cast<const Binarize*>(&step)) return std::string("binarize ") + form(b->form);
  if (dynamic_cast<const FloatConv*>(&step)) return "float conv";
  if (auto* st = dynamic_cast<const Bf16Stem*>(&step))
    return std::string(st->signs ? "stem + signs, " : "stem, ") +
           (st->on_tensor_cores() ? "tensor cores" : st->direct() ? "direct" : "three passes");
  if (dynamic_cast<const FloatLinear*>(&step)) return "float linear";
  if (dynamic_cast<const FloatBatchNorm*>(&step)) return "float batchnorm";
  if (auto* r = dynamic_cast<const Relu*>(&step)) return std::string("relu ") + form(r->form);
  if (auto* m = dynamic_cast<const MaxPool*>(&step)) return std::string("max pool ") + form(m->form);
  if (auto* g = dynamic_cast<const GlobalAvgPool*>(&step)) return std::string("avg pool ") + form(g->form);
  if (auto* f = dynamic_cast<const Flatten*>(&step)) return std::string("flatten ") + form(f->form);
  if (auto* w = dynamic_cast<const W1A16Layer*>(&step)) return w->linear ? "W1A16 linear" : "W1A16 conv";
  if (auto* w = dynamic_cast<const W1A1Layer*>(&step)) return "W1A1 " + w->name;
  if (dynamic_cast<const ResidualSum*>(&step)) return "residual sum";
  if (auto* b = dynamic_cast<const BinaryBlock*>(&step)) return "W1A1 block " + b->first.name;
  return "step";
}

// The stem on tensor cores in one packed::StemArithmetic form on a direct Bf16Stem's inputs,
// timed alone as the steps are: its signs form (with how many bits differ from `direct_bits`,
// the direct kernel's: the operands' roundings flip near-zero values) and its bf16 form.
void list_stem_form(const infer::Bf16Stem& stem, const Tensor& x, const Tensor& direct_bits,
                    packed::StemArithmetic arithmetic) {
  const auto signs = [&] {
    return packed::stem_conv_signs(x, stem.direct_weight, stem.scale, stem.shift, stem.params, stem.relu, arithmetic);
  };
  const float signs_ms = median_ms([&] { signs(); });
  const Tensor mine = signs().cpu(), theirs = direct_bits.cpu();
  long long differ = 0;
  const uint32_t* p = static_cast<const uint32_t*>(mine.raw());
  const uint32_t* q = static_cast<const uint32_t*>(theirs.raw());
  if (mine.nbytes() == theirs.nbytes())
    for (size_t i = 0; i < mine.nbytes() / 4; ++i) differ += __builtin_popcount(p[i] ^ q[i]);
  else
    differ = -1;
  const std::string what = std::string("  (tensor cores, ") +
                           (arithmetic == packed::StemArithmetic::Bf16TensorCores ? "bf16" : "split-bf16");
  std::printf("%4s  %-40s | %9.3f | %lld of %lld bits differ from the direct's\n", "", (what + ": signs)").c_str(),
              signs_ms, differ, static_cast<long long>(mine.nbytes()) * 8);
  std::printf("%4s  %-40s | %9.3f |\n", "", (what + ": bf16 NHWC)").c_str(), median_ms([&] {
                packed::stem_conv_nhwc(x, stem.direct_weight, stem.scale, stem.shift, stem.params, stem.relu,
                                       DType::BF16, arithmetic);
              }));
}

// Both tensor-core forms (split-bf16, then bf16 operands), where the GPU has tensor cores.
void list_stem_tensor_cores(const infer::Bf16Stem& stem, const Tensor& x, const Tensor& direct_bits) {
  if (!packed::stem_tensor_cores_available(Device::CUDA)) {
    std::printf("%4s  %-40s |\n", "", "  (tensor cores: not run, needs sm_80)");
    return;
  }
  for (const auto arithmetic : {packed::StemArithmetic::SplitBf16TensorCores, packed::StemArithmetic::Bf16TensorCores})
    list_stem_form(stem, x, direct_bits, arithmetic);
}

// Each top-level step of the plan timed alone (for_each_timed_step), with its output; a Bf16Stem
// also with MDQ_STEM_DIRECT=0, its three passes, and one that writes its signs also unfused: the
// direct stem's Dense map, then Binarize on it.
void list_steps(const char* title, const infer::Plan& plan, const Tensor& images) {
  std::printf("\n%s at batch %lld, each step timed alone:\n", title, static_cast<long long>(images.dim(0)));
  std::printf("%4s  %-40s | %9s | %s\n", "step", "what", "ms", "output");
  float total = 0;
  size_t i = 0;
  for_each_timed_step(plan, images, [&](const infer::Step& step, const infer::Activation& in, float ms,
                                        const infer::Activation& out) {
    total += ms;
    std::printf("%4zu  %-40s | %9.3f | %s\n", i++, describe(step).c_str(), ms, out.x.describe().c_str());
    const auto* stem = dynamic_cast<const infer::Bf16Stem*>(&step);
    if (!stem || !stem->direct()) return;
    {
      const ScopedEnv off("MDQ_STEM_DIRECT", "0");
      const char* what = stem->signs ? "  (MDQ_STEM_DIRECT=0: 3 passes + signs)" : "  (MDQ_STEM_DIRECT=0: 3 passes)";
      std::printf("%4s  %-40s | %9.3f |\n", "", what, time_alone(step, in));
    }
    if (stem->signs) {  // the two steps the fusion replaced, each timed alone as above
      infer::Bf16Stem dense = *stem;
      dense.signs = false;
      infer::Activation d = in;
      dense.run(d);
      std::printf("%4s  %-40s | %9.3f | %s\n", "", "  (unfused: stem, direct)", time_alone(dense, in),
                  d.x.describe().c_str());
      std::printf("%4s  %-40s | %9.3f |\n", "", "  (unfused: binarize Dense)",
                  time_alone(infer::Binarize(infer::Form::Dense), d));
      list_stem_tensor_cores(*stem, in.x, out.x);
    }
  });
  std::printf("%4s  %-40s | %9.3f |\n", "", "sum of the steps", total);
}

// The plan's forward on `images` captured as a CUDA graph and timed as replays; -1 (and a line
// saying why) when the capture fails. The plan must have run eagerly on this shape first: cuDNN's
// algorithm search and the allocator's first allocations cannot be captured.
float graph_ms(const infer::Plan& plan, const Tensor& images) {
  CudaGraph graph;  // declared before the logits it holds: they go back to its pool first
  Tensor logits;
  try {
    graph.capture([&] { logits = plan.logits(images); });
  } catch (const std::exception& e) {
    std::printf("(CUDA graph capture failed: %s)\n", e.what());
    return -1.f;
  }
  return median_ms([&] { graph.replay(); });
}

bool all_finite(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

// max|a - b| / max|b| and the rows whose top-1 class is the same.
struct Agreement {
  double rel = 0;
  int same_top1 = 0, rows = 0;
  bool finite = true;
};
Agreement agreement(const Tensor& a, const Tensor& b) {
  const std::vector<float> x = a.cpu().to_vector(), y = b.cpu().to_vector();
  Agreement r;
  r.rows = static_cast<int>(b.dim(0));
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    max_diff = std::max(max_diff, std::fabs(double(x[i]) - y[i]));
    max_ref = std::max(max_ref, std::fabs(double(y[i])));
  }
  r.rel = max_diff / std::max(max_ref, 1e-30);
  for (int n = 0; n < r.rows; ++n) {
    const float* p = x.data() + size_t(n) * kClasses;
    const float* q = y.data() + size_t(n) * kClasses;
    r.same_top1 += std::max_element(p, p + kClasses) - p == std::max_element(q, q + kClasses) - q;
  }
  r.finite = all_finite(x) && all_finite(y);
  return r;
}

void check(const Baseline& m, nn::Module& float_net, nn::Module& sign_net, const infer::Plan& w1a16,
           const infer::Plan& split, const infer::Plan& w1a1, const infer::Plan& w1a16_stem,
           const infer::Plan& w1a1_stem, const infer::Plan& w1a1_tc, const infer::Plan& w1a1_tcb) {
  const int N = 8;
  const Tensor images = Tensor::uniform({N, 3, kImage, kImage}, -1.f, 1.f, 42, Device::CUDA);
  CudnnNet ref(m, N);
  ref.set_input(images);
  ref.forward();
  NoGradScope no_grad;
  const Tensor float_logits = float_net.forward(Var(images)).value();
  const Tensor sign_logits = sign_net.forward(Var(images)).value();
  const Agreement a = agreement(w1a16.logits(images), ref.logits);
  const Agreement s = agreement(split.logits(images), float_logits);
  const Agreement b = agreement(w1a1.logits(images), sign_logits);
  const Agreement as = agreement(w1a16_stem.logits(images), ref.logits);
  const Agreement bs = agreement(w1a1_stem.logits(images), sign_logits);
  const Agreement bt = agreement(w1a1_tc.logits(images), sign_logits);
  const Agreement bb = agreement(w1a1_tcb.logits(images), sign_logits);
  std::printf("check, batch %d, max |diff| / max |logit| and top-1 agreement:\n"
              "  W1A16 vs cuDNN bf16 on the same +-1 weights: %.3g, %d/%d (%s; loose bf16 tolerance 5e-2)\n"
              "  W1A16 split vs the float engine (fp32): %.3g, %d/%d (%s; tolerance 1e-4)\n"
              "  W1A1 vs the float engine (act_bits 1; cuDNN's inexact +-1 convs may flip a near-tie sign): %.3g, "
              "%d/%d%s\n\n",
              N, a.rel, a.same_top1, a.rows, a.rel <= 5e-2 && a.finite ? "OK" : "LARGE", s.rel, s.same_top1, s.rows,
              s.rel <= 1e-4 && s.finite ? "OK" : "LARGE", b.rel, b.same_top1, b.rows,
              b.finite ? "" : " (NON-FINITE values)");
  std::printf("  W1A16 stem16 vs cuDNN bf16: %.3g, %d/%d (%s; loose bf16 tolerance 5e-2)\n"
              "  W1A1 stem16 vs the float engine (the stem's signs from its own f32 sums, or bf16 values with\n"
              "    MDQ_STEM_DIRECT=0: a near-tie may flip): %.3g, "
              "%d/%d%s\n",
              as.rel, as.same_top1, as.rows, as.rel <= 5e-2 && as.finite ? "OK" : "LARGE", bs.rel, bs.same_top1,
              bs.rows, bs.finite ? "" : " (NON-FINITE values)");
  const char* no_tc = w1a1_tc.census().stem_tensor_cores ? "" : "; here the direct kernel's, no tensor cores";
  std::printf("  W1A1 tc stem vs the float engine (the stem's signs from f32 sums of split-bf16 images and\n"
              "    weights%s: a near-tie may flip): %.3g, %d/%d%s\n",
              no_tc, bt.rel, bt.same_top1, bt.rows, bt.finite ? "" : " (NON-FINITE values)");
  std::printf("  W1A1 tc-bf16 vs the float engine (the same from bf16-rounded images and weights%s): %.3g, "
              "%d/%d%s\n\n",
              no_tc, bb.rel, bb.same_top1, bb.rows, bb.finite ? "" : " (NON-FINITE values)");
}

}  // namespace

int main(int argc, char** argv) {
  if (!gpu_for_bench("bench_packed_resnet18")) return 0;
  const std::vector<int> batches = parse_bench_args(argc, argv, {1, 32, 256}).batches;
  const int breakdown_batch = *std::max_element(batches.begin(), batches.end());

  auto float_net = make_net(32), sign_net = make_net(1);
  const Baseline m = make_baseline(*float_net);
  const auto w1a16 = lower(*float_net, infer::PackedPrecision::BF16);
  const auto split = lower(*float_net, infer::PackedPrecision::SplitBF16);
  const auto w1a1 = lower(*sign_net, infer::PackedPrecision::SplitBF16);
  const auto w1a16_stem = lower(*float_net, infer::PackedPrecision::BF16, infer::StemPath::Bf16);
  const auto w1a16_tc = lower(*float_net, infer::PackedPrecision::BF16, infer::StemPath::TensorCores);
  const auto w1a1_stem = lower(*sign_net, infer::PackedPrecision::SplitBF16, infer::StemPath::Bf16);
  const auto w1a1_tc = lower(*sign_net, infer::PackedPrecision::SplitBF16, infer::StemPath::TensorCores);
  const auto w1a1_tcb = lower(*sign_net, infer::PackedPrecision::SplitBF16, infer::StemPath::TensorCoresBf16);
  std::printf("GPU: %s\n", cuda_device_name().c_str());
  std::printf("ResNet-18, ImageNet 224x224x3 (models::make_resnet18: stem conv7x7/2 + maxpool3/2, 4 stages x 2\n"
              "BasicBlocks, 1x1/2 downsamples, avgpool, fc 512->1000), random +-1 parameters, BN folded.\n"
              "cuDNN bf16: hand-built%s. The others: infer::lower, what mdq-infer --engine packed runs:\n"
              "  W1A16       %s\n  W1A16 split %s\n  W1A1        %s\n"
              "  W1A16 stem16 and W1A1 stem16: the same with LowerOptions::stem Bf16 (the stem one step into\n"
              "  NHWC: %s; W1A1 stem16: %s)\n"
              "  W1A16 tc stem, W1A1 tc stem: W1A16 stem16 and W1A1 stem16 with LowerOptions::stem TensorCores\n"
              "  (mdq-infer's --stem auto; W1A16 tc stem is mdq-infer --packed-precision bf16): %s\n"
              "  W1A1 tc-bf16: the same with LowerOptions::stem TensorCoresBf16 (bf16-rounded images and weights)\n"
              "  W1A1 graph, W1A1 s16 graph, W1A1 tc graph: those W1A1 plans captured as a CUDA graph, timed as\n"
              "  replays (W1A1 tc graph: what mdq-infer --engine packed runs by default)\n"
              "Weights MB = every tensor the version holds: conv/fc weights (bf16, f32, or packed bits with\n"
              "their tap popcounts), folded BN, sign thresholds. ms = median of 5 rounds of the mean over many\n"
              "forward passes (CUDA events, one stream), from f32 NCHW images to f32 logits.\n\n",
              m.stem_channels == 3 ? "" : " (stem input padded to 8 channels: cuDNN had no bf16 NHWC algorithm for 3)",
              w1a16->summary().c_str(), split->summary().c_str(), w1a1->summary().c_str(),
              packed::stem_direct_enabled() ? "the direct stem kernel" : "three passes, MDQ_STEM_DIRECT=0",
              w1a1_stem->summary().c_str(),
              w1a1_tc->census().stem_tensor_cores ? "the stem's sums on tensor cores, split-bf16 images and weights"
              : w1a1_tc->census().stem_direct     ? "NO tensor cores here (compute capability < 8.0): the direct kernel"
                                                  : "three passes, MDQ_STEM_DIRECT=0");
  check(m, *float_net, *sign_net, *w1a16, *split, *w1a1, *w1a16_stem, *w1a1_stem, *w1a1_tc, *w1a1_tcb);

  std::printf("%5s  %-14s | %9s | %10s | %8s | %10s\n", "batch", "version", "ms/batch", "images/s", "x cuDNN",
              "weights MB");
  std::vector<std::string> breakdown;
  for (int N : batches) {
    const Tensor images = Tensor::uniform({N, 3, kImage, kImage}, -1.f, 1.f, 42, Device::CUDA);
    float base_ms = 0;
    for (Version v : {Version::CudnnBF16, Version::W1A16, Version::W1A16Split, Version::W1A1, Version::W1A16Stem,
                      Version::W1A16Tc, Version::W1A1Stem, Version::W1A1Tc, Version::W1A1TcBf16, Version::W1A1Graph,
                      Version::W1A1StemGraph, Version::W1A1TcGraph}) {
      const infer::Plan* plan = v == Version::W1A16 ? w1a16.get() : v == Version::W1A16Split ? split.get()
                                : v == Version::W1A1 || v == Version::W1A1Graph ? w1a1.get()
                                : v == Version::W1A16Stem ? w1a16_stem.get()
                                : v == Version::W1A16Tc ? w1a16_tc.get()
                                : v == Version::W1A1Stem || v == Version::W1A1StemGraph ? w1a1_stem.get()
                                : v == Version::W1A1Tc || v == Version::W1A1TcGraph ? w1a1_tc.get()
                                : v == Version::W1A1TcBf16 ? w1a1_tcb.get() : nullptr;
      const bool graph = v == Version::W1A1Graph || v == Version::W1A1StemGraph || v == Version::W1A1TcGraph;
      if (graph) {  // after the eager rows of this batch
        const float ms = graph_ms(*plan, images);
        if (ms > 0)
          std::printf("%5d  %-14s | %9.3f | %10.1f | %7.2fx | %10.2f\n", N, name(v), ms, N * 1e3 / ms, base_ms / ms,
                      static_cast<double>(plan->census().bytes) / 1e6);
        continue;
      }
      std::unique_ptr<CudnnNet> net;
      if (!plan) {
        net = std::make_unique<CudnnNet>(m, N);
        net->set_input(images);
      }
      const float ms = median_ms([&] {
        if (plan) plan->logits(images);
        else net->forward();
      });
      if (!plan) base_ms = ms;
      const double bytes = plan ? static_cast<double>(plan->census().bytes) : static_cast<double>(m.bytes);
      std::printf("%5d  %-14s | %9.3f | %10.1f | %7.2fx | %10.2f\n", N, name(v), ms, N * 1e3 / ms, base_ms / ms,
                  bytes / 1e6);
      std::fflush(stdout);
      if (N != breakdown_batch) continue;
      float part[4];
      if (plan) {
        time_steps(*plan, images, part);
      } else {
        const unsigned parts[4] = {kStem, kBlocks, kRest, kFc};
        for (int p = 0; p < 4; ++p) part[p] = median_ms([&] { net->forward(parts[p]); });
      }
      char line[256];
      std::snprintf(line, sizeof line,
                    "%-14s | %8.3f | %8.3f %4.0f%% | %8.3f %4.0f%% | %8.3f %4.0f%% | %8.3f %4.0f%% | %8.3f", name(v),
                    ms, part[0], 100 * part[0] / ms, part[1], 100 * part[1] / ms, part[2], 100 * part[2] / ms, part[3],
                    100 * part[3] / ms, part[0] + part[1] + part[2] + part[3]);
      breakdown.push_back(line);
    }
  }
  std::printf("\nBreakdown at batch %d, ms per batch, each part timed alone (%% of the full pass):\n"
              "  stem = the first conv (W1A16: BN + ReLU fused in; stem16: the folded BN (+ ReLU) too, one\n"
              "  direct kernel, or with MDQ_STEM_DIRECT=0 the images' conversion to NHWC bf16, cuDNN and the\n"
              "  affine pass, all in one step; W1A1 stem16 lowered with the direct kernel, and W1A1 tc stem:\n"
              "  the sign packing too); blocks = the 8 residual blocks (convs, BN, ReLU or sign packing,\n"
              "  residual sums); rest = stem BN/ReLU or sign packing, max and average pool, layout changes;\n"
              "  fc = the classifier (cuBLAS + bias, or W1A16).\n", breakdown_batch);
  std::printf("%-14s | %8s | %14s | %14s | %14s | %14s | %8s\n", "version", "full", "stem", "blocks", "rest", "fc",
              "sum");
  for (const std::string& l : breakdown) std::printf("%s\n", l.c_str());

  const Tensor images = Tensor::uniform({breakdown_batch, 3, kImage, kImage}, -1.f, 1.f, 42, Device::CUDA);
  list_steps("W1A1 plan", *w1a1, images);
  list_steps("W1A1 stem16 plan", *w1a1_stem, images);
  return 0;
}

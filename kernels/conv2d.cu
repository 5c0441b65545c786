// The cuDNN path of 2-D convolution (kernels/conv2d.h), on NCHW f32 tensors or on NHWC bf16
// activations (the bf16 training path, conv2d_*_nhwc_bf16 at the end, where a few shapes run as
// cuBLAS GEMMs instead); descriptors and algorithm choices are cached per shape and precision,
// all work is queued on mdq::cuda::stream().
//
// Why a cache: building descriptors and searching algorithms costs far more than a small
// convolution, and a training run sees the same few shapes every step. A plan (descriptors) is
// built on a shape's first call; each direction's algorithms are ranked with
// cudnnFind*AlgorithmEx on that direction's first call, using the call's own buffers (the
// search writes the output, which the real call then overwrites). The fastest deterministic
// algorithm runs, so a run repeats bit for bit; a nondeterministic one only when no
// deterministic one works. An algorithm that Find timed but that refuses to run (seen on an
// H200: CUDNN_STATUS_BAD_PARAM at run time) is dropped and the next one runs.
// Timing makes the choice a property of the process: two processes (a resumed run, the ranks of
// a data-parallel job) can pick different algorithms for one shape and round differently. With
// MDQ_CUDNN_ALGOS=heuristic the ranking comes from cuDNN's heuristics instead
// (cudnnGet*Algorithm_v7, no timing), the same in every process on one card and cuDNN version.
// NHWC bf16 shapes for which cuDNN only has generic kernels run as GEMMs on cuBLAS instead
// (bf16_route), with one fixed cuBLAS algorithm: 1x1 convolutions without padding (ResNet's
// downsampling shortcuts) on the pixels they read, and convolutions of few input channels (the
// 3-channel stems) on an im2col of x. MDQ_CONV_GEMM=0 turns that route off (those shapes on
// cuDNN, as before it), so that one build can time both: `MDQ_CONV_GEMM=0 bench_train_step ...`
// against the default.
//
// Precision (the engine's mdq::precision(), passed with each call and part of the cache key):
//   FP32 -> NCHW f32 operands, CUDNN_FMA_MATH: true fp32, no tensor cores, no FFT or Winograd.
//   TF32 -> NCHW f32 operands, CUDNN_DEFAULT_MATH: cuDNN may use TF32 tensor cores.
//   BF16 -> each operand is rounded to bf16 and laid out NHWC by one tiled transpose
//           (kernels/nhwc_bf16.cu), cuDNN runs its bf16 tensor-core kernels with f32
//           accumulation, and the bf16 result goes back to NCHW f32. NHWC because that is the
//           layout cuDNN's Hopper kernels read: handed NCHW, cuDNN transposes internally anyway.
//           dy is converted once for both gradients. (Training under BF16 keeps its
//           activations NHWC bf16 and takes conv2d_*_nhwc_bf16 below, with no conversions.)
//           The rounding is autocast's (bf16 operands and results, f32 sums); master weights,
//           dual variables and BN stay f32 in the engine (DESIGN.md §2). A direction cuDNN has
//           no bf16 algorithm for runs at TF32 instead, and so do grouped convolutions and
//           channel counts that are not multiples of 8 (see bf16_fits).
#include <algorithm>
#include <array>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "common/error.h"
#include "kernels/backend.h"
#include "kernels/conv2d.h"
#include "kernels/cuda_common.h"
#include "kernels/depthwise_nhwc.h"
#include "kernels/device_memory.h"
#include "kernels/elementwise.h"
#include "kernels/matmul.h"
#include "kernels/nhwc_bf16.h"

namespace mdq::kernels {
namespace {

// The most workspace an algorithm may ask for during the search; larger ones are skipped.
constexpr size_t kFindWorkspaceLimit = size_t(256) << 20;

enum Direction { kForward = 0, kBackwardData = 1, kBackwardFilter = 2 };

struct Key {
  std::array<int64_t, 11> dims;  // N C H W  O Cg KH KW  stride padding groups
  int precision;
  bool operator<(const Key& o) const { return std::tie(dims, precision) < std::tie(o.dims, o.precision); }
};

struct Plan {
  // x, w, y describe the tensors cuDNN is handed: NCHW f32, or NHWC bf16 under BF16.
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  // The bias is always added to the f32 NCHW output.
  cudnnTensorDescriptor_t y_f32 = nullptr, bias = nullptr;
  // One convolution descriptor per direction, so each can carry the math type its algorithm wants.
  cudnnConvolutionDescriptor_t conv[3] = {nullptr, nullptr, nullptr};
  // Per direction: the algorithms that may run, best first (empty until the first call ranks them).
  std::vector<CudnnConvChoice> ranked[3];
  bool searched[3] = {false, false, false};
};

std::mutex g_mutex;
std::map<Key, Plan> g_plans;  // never freed: descriptors are tiny and live to process exit

int to_int(int64_t v, const char* what) {
  MDQ_CHECK(v >= 0 && v <= INT_MAX, "conv2d (cuDNN): " << what << " " << v << " does not fit cuDNN's int");
  return static_cast<int>(v);
}

cudnnMathType_t math_type_for(Precision p) {
  switch (p) {
    case Precision::FP32: return CUDNN_FMA_MATH;
    case Precision::TF32: return CUDNN_DEFAULT_MATH;
    case Precision::BF16: return CUDNN_TENSOR_OP_MATH;
  }
  return CUDNN_FMA_MATH;
}

cudnnTensorDescriptor_t tensor_desc(int64_t n, int64_t c, int64_t h, int64_t w, bool bf16_nhwc) {
  MDQ_CHECK(n * c * h * w <= INT_MAX, "conv2d (cuDNN): tensor [" << n << ", " << c << ", " << h << ", " << w
                                                                  << "] has more than 2^31 elements; split the batch");
  cudnnTensorDescriptor_t d;
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&d));
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(d, bf16_nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW,
                                         bf16_nhwc ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT, to_int(n, "N"),
                                         to_int(c, "C"), to_int(h, "H"), to_int(w, "W")));
  return d;
}

// The plan for this shape under precision prec; builds descriptors on first use. Caller holds
// g_mutex.
Plan& plan_for(const Conv2dGeometry& g, Precision prec) {
  Key key{{g.N, g.C, g.H, g.W, g.O, g.Cg, g.KH, g.KW, g.stride, g.pad, g.groups}, static_cast<int>(prec)};
  auto it = g_plans.find(key);
  if (it != g_plans.end()) return it->second;

  const bool bf16 = prec == Precision::BF16;
  Plan pl;
  pl.x = tensor_desc(g.N, g.C, g.H, g.W, bf16);
  CUDNN_CHECK(cudnnCreateFilterDescriptor(&pl.w));
  CUDNN_CHECK(cudnnSetFilter4dDescriptor(pl.w, bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT,
                                         bf16 ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW, to_int(g.O, "O"),
                                         to_int(g.Cg, "C/groups"), to_int(g.KH, "KH"), to_int(g.KW, "KW")));
  for (int d = 0; d < 3; ++d) {
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&pl.conv[d]));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(pl.conv[d], to_int(g.pad, "padding"), to_int(g.pad, "padding"),
                                                to_int(g.stride, "stride"), to_int(g.stride, "stride"), 1, 1,
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));  // f32 accumulation
    CUDNN_CHECK(cudnnSetConvolutionGroupCount(pl.conv[d], to_int(g.groups, "groups")));
    CUDNN_CHECK(cudnnSetConvolutionMathType(pl.conv[d], math_type_for(prec)));
  }
  int n, c, h, w;
  CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(pl.conv[kForward], pl.x, pl.w, &n, &c, &h, &w));
  MDQ_CHECK(n == g.N && c == g.O && h == g.OH && w == g.OW,
            "conv2d (cuDNN): cuDNN's output shape [" << n << ", " << c << ", " << h << ", " << w
                                                     << "] differs from mdq's [" << g.N << ", " << g.O << ", " << g.OH
                                                     << ", " << g.OW << "]");
  pl.y = tensor_desc(g.N, g.O, g.OH, g.OW, bf16);
  pl.y_f32 = bf16 ? tensor_desc(g.N, g.O, g.OH, g.OW, false) : pl.y;
  pl.bias = tensor_desc(1, g.O, 1, 1, false);
  return g_plans.emplace(key, pl).first->second;
}

// The successful results a precision allows, deterministic ones first, each group in cuDNN's
// time order (perf is sorted by time). Skipped: tensor-op math under FP32, and fp16
// down-conversion (CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) ever.
// FFT and Winograd algorithms compute through transforms whose rounding is far from a direct
// fp32 sum's: on an H200 a 5x5 weight gradient picked by timing came out 1e-3 off (relative) in
// fp32. FP32 promises true fp32 sums, so it keeps to the direct and GEMM-based algorithms.
bool transform_based(cudnnConvolutionFwdAlgo_t a) {
  return a == CUDNN_CONVOLUTION_FWD_ALGO_FFT || a == CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING ||
         a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD || a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED;
}
bool transform_based(cudnnConvolutionBwdDataAlgo_t a) {
  return a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT || a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING ||
         a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD || a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED;
}
bool transform_based(cudnnConvolutionBwdFilterAlgo_t a) {
  return a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT || a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING ||
         a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED;
}

template <class Perf>
std::vector<CudnnConvChoice> rank(const std::vector<Perf>& perf, int returned, Precision prec) {
  std::vector<CudnnConvChoice> det, nondet;
  for (int i = 0; i < returned; ++i) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
    if (perf[i].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;
    if (prec == Precision::FP32 && perf[i].mathType == CUDNN_TENSOR_OP_MATH) continue;
    if (prec == Precision::FP32 && transform_based(perf[i].algo)) continue;
    CudnnConvChoice c;
    c.algo = static_cast<int>(perf[i].algo);
    c.math_type = static_cast<int>(perf[i].mathType);
    c.workspace_bytes = perf[i].memory;
    (perf[i].determinism == CUDNN_DETERMINISTIC ? det : nondet).push_back(c);
  }
  det.insert(det.end(), nondet.begin(), nondet.end());
  return det;
}

// Runs direction d of plan pl: ranks the algorithms on the direction's first call
// (find(count, &returned, perf, workspace, bytes) runs cudnnFind*Ex), then calls
// run(algo, workspace, bytes) with the best one, dropping any that cuDNN refuses at run time.
// Returns false when no algorithm runs: the caller decides whether that is an error.
bool heuristic_algos() {
  static const bool on = [] {
    const char* e = std::getenv("MDQ_CUDNN_ALGOS");
    return e && std::strcmp(e, "heuristic") == 0;
  }();
  return on;
}

template <class Perf, class Find, class Guess, class Run>
bool run_direction(cudnnHandle_t h, Plan& pl, Direction d, Precision prec,
                   cudnnStatus_t (*max_count_of)(cudnnHandle_t, int*), Find find, Guess guess, Run run) {
  std::vector<CudnnConvChoice>& ranked = pl.ranked[d];
  if (!pl.searched[d]) {
    int max_count = 0, returned = 0;
    CUDNN_CHECK(max_count_of(h, &max_count));
    std::vector<Perf> perf(max_count);
    if (heuristic_algos()) {
      guess(max_count, &returned, perf.data());
      // The heuristics list algorithms whatever their workspace; keep the search's limit.
      perf.resize(returned);
      perf.erase(std::remove_if(perf.begin(), perf.end(), [](const Perf& p) { return p.memory > kFindWorkspaceLimit; }),
                 perf.end());
      returned = static_cast<int>(perf.size());
    } else {
      // Timed twice, each algorithm ranked by its faster time: the first search also times the
      // first launch of kernels not yet loaded (CUDA loads modules lazily), and on an H200 it
      // ranked a generic kernel first for a ResNet-18 layer (2.82 ms steps at batch 128, against
      // 2.59 ms with cuDNN's heuristic order).
      find(max_count, &returned, perf.data(), cuda::workspace(kFindWorkspaceLimit), kFindWorkspaceLimit);
      std::vector<Perf> again(max_count);
      int returned_again = 0;
      find(max_count, &returned_again, again.data(), cuda::workspace(kFindWorkspaceLimit), kFindWorkspaceLimit);
      perf.resize(returned);
      for (Perf& p : perf)
        for (int i = 0; i < returned_again; ++i)
          if (again[i].algo == p.algo && again[i].mathType == p.mathType && again[i].status == CUDNN_STATUS_SUCCESS &&
              p.status == CUDNN_STATUS_SUCCESS)
            p.time = std::min(p.time, again[i].time);
      std::stable_sort(perf.begin(), perf.end(), [](const Perf& a, const Perf& b) {
        const bool ok_a = a.status == CUDNN_STATUS_SUCCESS, ok_b = b.status == CUDNN_STATUS_SUCCESS;
        return ok_a != ok_b ? ok_a : a.time < b.time;
      });
    }
    ranked = rank(perf, returned, prec);
    pl.searched[d] = true;
  }
  while (!ranked.empty()) {
    const CudnnConvChoice& c = ranked.front();
    // Under FP32 the descriptor stays FMA-only; otherwise it carries what the algorithm was timed with.
    if (prec != Precision::FP32)
      CUDNN_CHECK(cudnnSetConvolutionMathType(pl.conv[d], static_cast<cudnnMathType_t>(c.math_type)));
    if (run(c.algo, cuda::workspace(c.workspace_bytes), c.workspace_bytes) == CUDNN_STATUS_SUCCESS) return true;
    ranked.erase(ranked.begin());
  }
  return false;
}

void require_ran(bool ran, const char* what) {
  MDQ_CHECK(ran, "conv2d (cuDNN): no " << what << " algorithm runs for this shape within "
                                       << (kFindWorkspaceLimit >> 20) << " MiB of workspace");
}

const float kOne = 1.f, kZero = 0.f;

// cudnnConvolutionForward into y with plan pl (x, w, y in the plan's layout and type).
bool forward(cudnnHandle_t h, Plan& pl, Precision prec, const void* x, const void* w, void* y) {
  return run_direction<cudnnConvolutionFwdAlgoPerf_t>(
      h, pl, kForward, prec, cudnnGetConvolutionForwardAlgorithmMaxCount,
      [&](int count, int* returned, cudnnConvolutionFwdAlgoPerf_t* perf, void* ws, size_t bytes) {
        CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(h, pl.x, x, pl.w, w, pl.conv[kForward], pl.y, y, count,
                                                           returned, perf, ws, bytes));
      },
      [&](int count, int* returned, cudnnConvolutionFwdAlgoPerf_t* perf) {
        CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, pl.x, pl.w, pl.conv[kForward], pl.y, count, returned,
                                                           perf));
      },
      [&](int algo, void* ws, size_t bytes) {
        return cudnnConvolutionForward(h, &kOne, pl.x, x, pl.w, w, pl.conv[kForward],
                                       static_cast<cudnnConvolutionFwdAlgo_t>(algo), ws, bytes, &kZero, pl.y, y);
      });
}

bool backward_data(cudnnHandle_t h, Plan& pl, Precision prec, const void* dy, const void* w, void* dx) {
  return run_direction<cudnnConvolutionBwdDataAlgoPerf_t>(
      h, pl, kBackwardData, prec, cudnnGetConvolutionBackwardDataAlgorithmMaxCount,
      [&](int count, int* returned, cudnnConvolutionBwdDataAlgoPerf_t* perf, void* ws, size_t bytes) {
        CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(h, pl.w, w, pl.y, dy, pl.conv[kBackwardData], pl.x, dx,
                                                                count, returned, perf, ws, bytes));
      },
      [&](int count, int* returned, cudnnConvolutionBwdDataAlgoPerf_t* perf) {
        CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, pl.w, pl.y, pl.conv[kBackwardData], pl.x, count,
                                                                returned, perf));
      },
      [&](int algo, void* ws, size_t bytes) {
        return cudnnConvolutionBackwardData(h, &kOne, pl.w, w, pl.y, dy, pl.conv[kBackwardData],
                                            static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), ws, bytes, &kZero, pl.x,
                                            dx);
      });
}

bool backward_filter(cudnnHandle_t h, Plan& pl, Precision prec, const void* dy, const void* x, void* dw) {
  return run_direction<cudnnConvolutionBwdFilterAlgoPerf_t>(
      h, pl, kBackwardFilter, prec, cudnnGetConvolutionBackwardFilterAlgorithmMaxCount,
      [&](int count, int* returned, cudnnConvolutionBwdFilterAlgoPerf_t* perf, void* ws, size_t bytes) {
        CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(h, pl.x, x, pl.y, dy, pl.conv[kBackwardFilter], pl.w,
                                                                  dw, count, returned, perf, ws, bytes));
      },
      [&](int count, int* returned, cudnnConvolutionBwdFilterAlgoPerf_t* perf) {
        CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, pl.x, pl.y, pl.conv[kBackwardFilter], pl.w, count,
                                                                  returned, perf));
      },
      [&](int algo, void* ws, size_t bytes) {
        return cudnnConvolutionBackwardFilter(h, &kOne, pl.x, x, pl.y, dy, pl.conv[kBackwardFilter],
                                              static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), ws, bytes, &kZero,
                                              pl.w, dw);
      });
}

// NCHW f32 -> NHWC bf16 of the three operand shapes (a weight [O][Cg][KH][KW] is a batch of O
// images of Cg channels).
struct Bf16Operands {
  const Conv2dGeometry& g;
  int64_t x_elems() const { return g.N * g.C * g.H * g.W; }
  int64_t w_elems() const { return g.O * g.Cg * g.KH * g.KW; }
  int64_t y_elems() const { return g.N * g.O * g.OH * g.OW; }
  void x_in(const float* x, uint16_t* xb) const { nchw_f32_to_nhwc<uint16_t>(x, xb, g.N, int(g.C), g.H * g.W); }
  void w_in(const float* w, uint16_t* wb) const { nchw_f32_to_nhwc<uint16_t>(w, wb, g.O, int(g.Cg), g.KH * g.KW); }
  void y_in(const float* y, uint16_t* yb) const { nchw_f32_to_nhwc<uint16_t>(y, yb, g.N, int(g.O), g.OH * g.OW); }
  void x_out(const uint16_t* xb, float* x, bool add) const {
    (add ? nhwc_bf16_add_to_nchw_f32 : nhwc_bf16_to_nchw_f32)(xb, x, g.N, g.H * g.W, int(g.C));
  }
  void w_out(const uint16_t* wb, float* w) const { nhwc_bf16_to_nchw_f32(wb, w, g.O, g.KH * g.KW, int(g.Cg)); }
  void y_out(const uint16_t* yb, float* y) const { nhwc_bf16_to_nchw_f32(yb, y, g.N, g.OH * g.OW, int(g.O)); }
};

// Whether a BF16 call runs on bf16 copies. cuDNN's bf16 tensor-core kernels want channel counts
// in multiples of 8, and on an H200 its bf16 NHWC kernels for the rest were slower than TF32 on
// the f32 tensors: MobileNetV2's depthwise layers took the step from 7.7k to 4.7k img/s at batch
// 128, and ResNet-18's 3-channel stem's weight gradient ran a generic 0.8 ms kernel.
bool bf16_fits(const Conv2dGeometry& g) { return g.groups == 1 && g.C % 8 == 0 && g.O % 8 == 0; }

bool no_bf16_algo(const Plan& pl, Direction d) { return pl.searched[d] && pl.ranked[d].empty(); }

// The BF16 forward; false when cuDNN has no bf16 algorithm for the shape. Caller holds g_mutex.
bool forward_bf16(cudnnHandle_t h, const Conv2dGeometry& g, const float* x, const float* w, float* y) {
  Plan& pl = plan_for(g, Precision::BF16);
  if (no_bf16_algo(pl, kForward)) return false;
  const Bf16Operands op{g};
  DeviceScratch<uint16_t> xb(op.x_elems()), wb(op.w_elems()), yb(op.y_elems());
  op.x_in(x, xb.get());
  op.w_in(w, wb.get());
  if (!forward(h, pl, Precision::BF16, xb.get(), wb.get(), yb.get())) return false;
  op.y_out(yb.get(), y);
  return true;
}

}  // namespace

void conv2d_forward_f32(const Conv2dGeometry& g, Precision prec, const float* x, const float* w, const float* bias,
                        float* y) {
  const bool bf16 = prec == Precision::BF16 && bf16_fits(g);
  cudnnHandle_t h = cuda::cudnn();
  std::lock_guard<std::mutex> lock(g_mutex);
  if (bf16 && forward_bf16(h, g, x, w, y)) {
    // y is written; the bias below is added in f32
  } else {
    if (prec == Precision::BF16) prec = Precision::TF32;
    require_ran(forward(h, plan_for(g, prec), prec, x, w, y), "forward");
  }
  if (bias) {
    const Plan& pl = plan_for(g, prec);
    CUDNN_CHECK(cudnnAddTensor(h, &kOne, pl.bias, bias, &kOne, pl.y_f32, y));
  }
}

void conv2d_backward_f32(const Conv2dGeometry& g, Precision prec, const float* dy, const float* x, const float* w,
                         float* dx, bool dx_add, float* dw) {
  cudnnHandle_t h = cuda::cudnn();
  std::lock_guard<std::mutex> lock(g_mutex);
  bool dx_done = !dx, dw_done = !dw;
  if (prec == Precision::BF16 && bf16_fits(g)) {
    // dy is rounded once and feeds both directions.
    Plan& pl = plan_for(g, Precision::BF16);
    const Bf16Operands op{g};
    DeviceScratch<uint16_t> dyb(op.y_elems());
    op.y_in(dy, dyb.get());
    if (!dx_done && !no_bf16_algo(pl, kBackwardData)) {
      DeviceScratch<uint16_t> wb(op.w_elems()), dxb(op.x_elems());
      op.w_in(w, wb.get());
      if (backward_data(h, pl, Precision::BF16, dyb.get(), wb.get(), dxb.get())) {
        op.x_out(dxb.get(), dx, dx_add);
        dx_done = true;
      }
    }
    if (!dw_done && !no_bf16_algo(pl, kBackwardFilter)) {
      DeviceScratch<uint16_t> xb(op.x_elems()), dwb(op.w_elems());
      op.x_in(x, xb.get());
      if (backward_filter(h, pl, Precision::BF16, dyb.get(), xb.get(), dwb.get())) {
        op.w_out(dwb.get(), dw);
        dw_done = true;
      }
    }
  }
  if (prec == Precision::BF16) prec = Precision::TF32;  // whatever the bf16 copies did not do
  if (!dx_done) {
    // cuDNN's beta = 1 would add in place, but its timed algorithm search writes the output:
    // a sum goes through a scratch instead (this path is the f32/tf32 one, off the bf16 step).
    const int64_t n = Bf16Operands{g}.x_elems();
    std::optional<DeviceScratch<float>> fresh;
    float* out = dx_add ? fresh.emplace(n).get() : dx;
    require_ran(backward_data(h, plan_for(g, prec), prec, dy, w, out), "backward-data");
    if (dx_add) axpy_f32(dx, 1.f, out, n);
  }
  if (!dw_done) require_ran(backward_filter(h, plan_for(g, prec), prec, dy, x, dw), "backward-filter");
}

// ---- NHWC bf16 activations (the bf16 training path).
namespace {
// The geometry cuDNN's bf16 kernels run for g: g itself when it fits them, or, for a groups-1
// convolution whose input channels are not a multiple of 8 (the 3-channel stems), g with C
// zero-padded up to one: zero channels add nothing to y, and the padded channels of dx and dw
// are dropped. On an H200 the 3-channel stem otherwise ran at TF32 on NCHW copies, its weight
// gradient alone 0.57 ms of ResNet-18's 7.8 ms step at batch 512. nullopt: neither fits.
std::optional<Conv2dGeometry> bf16_geometry(const Conv2dGeometry& g) {
  if (bf16_fits(g)) return g;
  if (g.groups != 1 || g.O % 8 != 0) return std::nullopt;
  Conv2dGeometry padded = g;
  padded.C = padded.Cg = (g.C + 7) / 8 * 8;
  return padded;
}

// False when MDQ_CONV_GEMM=0. Read on every call (a getenv beside a convolution's launches), so
// that one process, a test, can run a shape both ways.
bool conv_gemm_enabled() {
  const char* e = std::getenv("MDQ_CONV_GEMM");
  return !(e && std::strcmp(e, "0") == 0);
}

// The widest im2col row the im2col route takes: its cols scratch [P][K] is as large as K
// channels of the output, so the route is kept to few-channel inputs (the 3-channel stems: K 32
// for 3x3, 152 for 7x7).
constexpr int64_t kIm2colMaxColumns = 256;

// The columns of g's im2col rows: C*KH*KW, rounded up to a multiple of 8 so that every row
// starts 16-byte aligned for cuBLAS's tensor-core loads.
int64_t im2col_columns(const Conv2dGeometry& g) { return (g.C * g.KH * g.KW + 7) / 8 * 8; }

// What computes a groups-1 NHWC bf16 convolution (depthwise ones went to depthwise_nhwc.cu first).
// On an H200 cuDNN ran its generic kernels (convolve_common_engine_float_NHWC,
// implicit_convolve_sgemm) for ResNet-18's three strided 1x1 shortcuts and its 3-channel stem,
// 0.47 ms of the 2.84 ms step at batch 128 (also for stride-1 1x1 convolutions on the
// subsampled pixels, 645463a). Both kinds are one GEMM each way on cuBLAS:
//  - kGemm1x1: KH = KW = 1, no padding, any stride s: over the P = N*OH*OW pixels it reads
//    (rows and columns 0, s, 2s, ...), Y [P][O] = X [P][C] · W [O][C]^T, dX = dY · W, and
//    dW = dY^T · X. C must be a multiple of 8 as well (rows of X and W 16-byte aligned); other
//    1x1 convolutions fall to the next rule.
//  - kGemmIm2col: C not a multiple of 8 (cuDNN's bf16 kernels would need it zero-padded), with
//    an im2col row of at most kIm2colMaxColumns: Y = cols · W^T and dW = dY^T · cols, with
//    cols [P][K] = the windows of x in the weight's own order (im2col_nhwc_bf16) and W the
//    weight [O][C*KH*KW] as stored, both padded to K = im2col_columns(g) columns (a 3x3 stem:
//    27 -> 32, where cuDNN's padding to 8 channels made 72). dX stays on cuDNN: a stem's input
//    wants no gradient in training.
//  - kCudnn: everything else (and everything under MDQ_CONV_GEMM=0).
// Both GEMM routes need O a multiple of 8 (aligned rows of Y and dW) and every operand below
// 2^31 elements (cuBLAS's int sizes; cuDNN has the same limit and names it).
enum class Bf16Route { kCudnn, kGemm1x1, kGemmIm2col };

Bf16Route bf16_route(const Conv2dGeometry& g) {
  if (!conv_gemm_enabled() || g.groups != 1 || g.O % 8 != 0) return Bf16Route::kCudnn;
  const bool plain_1x1 = g.KH == 1 && g.KW == 1 && g.pad == 0 && g.C % 8 == 0;
  const int64_t K = plain_1x1 ? g.C : im2col_columns(g), P = g.N * g.OH * g.OW;
  if (P * std::max(K, g.O) > INT_MAX || g.N * g.H * g.W * g.C > INT_MAX) return Bf16Route::kCudnn;
  if (plain_1x1) return Bf16Route::kGemm1x1;
  if (g.C % 8 != 0 && K <= kIm2colMaxColumns) return Bf16Route::kGemmIm2col;
  return Bf16Route::kCudnn;
}

// Row-major out [m][n] = op(a) [m][k] · op(b) [k][n] on cuBLAS, bf16 operands and f32 sums, out
// bf16 or f32 (out_type). op(a) is a as stored, rows of lda, or with ta the transpose of an a
// stored [k][m] (rows of lda); likewise b. cuBLAS is column-major, where a row-major [r][c]
// buffer reads as its transpose, so it computes out^T = op(b)^T · op(a)^T: b first (as in
// kernels/matmul.cu), and out's leading dimension is n.
// Reproducibility: cuBLAS documents that its routines give the same bits on every run with one
// toolkit version on GPUs of one architecture and SM count, while one stream is active (with
// concurrent streams it may pick other internal implementations); every call here is on
// mdq::cuda::stream() with the fixed CUBLAS_GEMM_DEFAULT. Other versions or cards may round
// differently, as cuDNN's algorithm choice may.
// Graph capture: like kernels/matmul.cu's GEMMs, these use the handle's own default workspace
// (the engine sets none with cublasSetWorkspace) and run eagerly in the two steps before a
// capture; tests/gpu/test_train_step_gpu.cpp holds a replayed bf16 ResNet-18 step, which takes
// both routes, to the eager one bit for bit.
void gemm_bf16(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const uint16_t* a, int64_t lda, const uint16_t* b,
               int64_t ldb, void* out, cudaDataType_t out_type) {
  const float one = 1.f, zero = 0.f;  // beta 0: out is written, never read
  cublasHandle_t h = cuda::cublas();
  // Split-K partial sums stay f32 for a bf16 out too (the default mode may reduce them in bf16).
  CUBLAS_CHECK(cublasSetMathMode(
      h, static_cast<cublasMath_t>(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
  CUBLAS_CHECK(cublasGemmEx(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(n),
                            static_cast<int>(m), static_cast<int>(k), &one, b, CUDA_R_16BF, static_cast<int>(ldb), a,
                            CUDA_R_16BF, static_cast<int>(lda), &zero, out, out_type, static_cast<int>(n),
                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// g on its GEMM route (bf16_route), as row-major matrices over its P = N*OH*OW output pixels:
// X [P][K] (x itself for a stride-1 1x1 convolution, its subsample for a strided one, its im2col
// on the im2col route), W [O][K] the weight rounded to bf16, Y and dY [P][O] the NHWC tensors as
// they are. Scratch copies live as long as the object (the call).
class ConvAsGemm {
 public:
  // filter: the weight as make_filter writes it, made once for both directions; nullptr: made
  // here from w on each call that reads it.
  ConvAsGemm(const Conv2dGeometry& g, Bf16Route route, const uint16_t* filter = nullptr)
      : g_(g), im2col_(route == Bf16Route::kGemmIm2col), filter_(filter) {}

  int64_t filter_elems() const { return g_.O * columns(); }
  // w [O][C][KH][KW] f32 -> bf16 [O][K]: the same order, rows zero-padded to K.
  void make_filter(const float* w, uint16_t* out) {
    const int64_t weight_row = g_.C * g_.KH * g_.KW;
    if (columns() == weight_row) return gemm_operand_to_bf16(w, out, g_.O * weight_row);
    uint16_t* wb = wb_.emplace(g_.O * weight_row).get();
    gemm_operand_to_bf16(w, wb, g_.O * weight_row);
    copy_channels_bf16(wb, int(weight_row), out, int(columns()), g_.O);
  }

  // y = bf16(X · W^T)
  void forward(const uint16_t* x, const float* w, uint16_t* y) {
    gemm_bf16(false, true, pixels(), g_.O, columns(), x_matrix(x), columns(), w_matrix(w), columns(), y, CUDA_R_16BF);
  }
  // dx = bf16(dY · W) at the pixels the convolution reads, 0 at the others (1x1 route only).
  void backward_data(const uint16_t* dy, const float* w, uint16_t* dx) {
    MDQ_CHECK(!im2col_, "conv2d (GEMM): the im2col route leaves the input gradient to cuDNN");
    uint16_t* dx_read = strided() ? dxs_.emplace(pixels() * g_.C).get() : dx;
    gemm_bf16(false, false, pixels(), g_.C, g_.O, dy, g_.O, w_matrix(w), g_.C, dx_read, CUDA_R_16BF);
    if (strided()) upsample_zero_nhwc_bf16(dx_read, dx, g_.N, int(g_.H), int(g_.W), int(g_.C), int(g_.stride));
  }
  // dw = dY^T · X in f32, written by cuBLAS as f32: [O][C] is the 1x1 weight's own layout; the
  // im2col route's [O][K] rows are cut to the weight's C*KH*KW.
  void backward_filter(const uint16_t* dy, const uint16_t* x, float* dw) {
    const int64_t weight_row = g_.C * g_.KH * g_.KW;
    float* dw_rows = columns() == weight_row ? dw : dwk_.emplace(g_.O * columns()).get();
    gemm_bf16(true, false, g_.O, columns(), pixels(), dy, g_.O, x_matrix(x), columns(), dw_rows, CUDA_R_32F);
    if (dw_rows != dw)
      CUDA_CHECK(cudaMemcpy2DAsync(dw, weight_row * sizeof(float), dw_rows, columns() * sizeof(float),
                                   weight_row * sizeof(float), g_.O, cudaMemcpyDeviceToDevice, cuda::stream()));
  }

 private:
  int64_t pixels() const { return g_.N * g_.OH * g_.OW; }
  int64_t columns() const { return im2col_ ? im2col_columns(g_) : g_.C; }  // K
  bool strided() const { return g_.stride > 1; }
  const uint16_t* x_matrix(const uint16_t* x) {
    if (!im2col_ && !strided()) return x;
    uint16_t* xm = xm_.emplace(pixels() * columns()).get();
    if (im2col_) {
      im2col_nhwc_bf16(x, xm, g_.N, int(g_.H), int(g_.W), int(g_.C), int(g_.KH), int(g_.KW), int(g_.stride),
                       int(g_.pad), int(columns()));
    } else {
      subsample_nhwc_bf16(x, xm, g_.N, int(g_.H), int(g_.W), int(g_.C), int(g_.stride));
    }
    return xm;
  }
  const uint16_t* w_matrix(const float* w) {
    if (filter_) return filter_;
    uint16_t* wk = wk_.emplace(filter_elems()).get();
    make_filter(w, wk);
    return wk;
  }

  const Conv2dGeometry g_;
  const bool im2col_;
  const uint16_t* const filter_;
  std::optional<DeviceScratch<uint16_t>> xm_, wb_, wk_, dxs_;
  std::optional<DeviceScratch<float>> dwk_;
};

// The operands cuDNN reads and writes for g when it runs the plan of gc = bf16_geometry(g): x and
// dx as they are or through copies with gc.C channels; the f32 weight rounded to a bf16 filter
// [O][KH][KW][gc.Cg] on each call; dw from cuDNN's bf16 [O][KH][KW][gc.Cg] back to f32
// [O][Cg][KH][KW]. The copies live as long as this object (the call).
class Bf16Nhwc {
 public:
  // filter: as make_filter writes it, made once for both directions; nullptr: made here.
  Bf16Nhwc(const Conv2dGeometry& g, const Conv2dGeometry& gc, const uint16_t* filter = nullptr)
      : g_(g), gc_(gc), filter_(filter) {}
  int64_t filter_elems() const { return taps() * gc_.Cg; }
  // w f32 [O][Cg][KH][KW] -> the bf16 filter [O][KH][KW][gc.Cg] cuDNN reads.
  void make_filter(const float* w, uint16_t* out) {
    if (!padded()) return Bf16Operands{g_}.w_in(w, out);
    uint16_t* wb = wb_.emplace(Bf16Operands{g_}.w_elems()).get();
    Bf16Operands{g_}.w_in(w, wb);
    copy_channels_bf16(wb, int(g_.Cg), out, int(gc_.Cg), taps());
  }
  const uint16_t* x(const uint16_t* x) {
    if (!padded()) return x;
    copy_channels_bf16(x, int(g_.C), xp_.emplace(pixels() * gc_.C).get(), int(gc_.C), pixels());
    return xp_->get();
  }
  const uint16_t* w(const float* w) {
    if (filter_) return filter_;
    uint16_t* wp = wp_.emplace(filter_elems()).get();
    make_filter(w, wp);
    return wp;
  }
  // Where cuDNN writes dx; dx_done moves it to dx.
  uint16_t* dx_target(uint16_t* dx) { return padded() ? dxp_.emplace(pixels() * gc_.C).get() : dx; }
  void dx_done(uint16_t* dx) {
    if (padded()) copy_channels_bf16(dxp_->get(), int(gc_.C), dx, int(g_.C), pixels());
  }
  uint16_t* dw_target() { return dwb_.emplace(taps() * gc_.Cg).get(); }
  void dw_done(float* dw) {
    const uint16_t* dwb = dwb_->get();
    if (padded()) {
      copy_channels_bf16(dwb, int(gc_.Cg), dwc_.emplace(taps() * g_.Cg).get(), int(g_.Cg), taps());
      dwb = dwc_->get();
    }
    Bf16Operands{g_}.w_out(dwb, dw);
  }

 private:
  bool padded() const { return gc_.C != g_.C; }
  int64_t pixels() const { return g_.N * g_.H * g_.W; }
  int64_t taps() const { return g_.O * g_.KH * g_.KW; }
  const Conv2dGeometry g_, gc_;
  const uint16_t* const filter_;
  std::optional<DeviceScratch<uint16_t>> xp_, wb_, wp_, dxp_, dwb_, dwc_;
};

// Runs direction d on g's bf16 plan under the lock; false when the bf16 kernels do not take g or
// cuDNN has no bf16 algorithm for it.
template <class Run>
bool on_bf16_plan(const Conv2dGeometry& g, Direction d, const uint16_t* filter, Run run) {
  const std::optional<Conv2dGeometry> gc = bf16_geometry(g);
  if (!gc) return false;
  cudnnHandle_t h = cuda::cudnn();
  std::lock_guard<std::mutex> lock(g_mutex);
  Plan& pl = plan_for(*gc, Precision::BF16);
  if (no_bf16_algo(pl, d)) return false;
  Bf16Nhwc operands(g, *gc, filter);
  return run(h, pl, operands);
}
}  // namespace

// A shape runs on its GEMM route (bf16_route) or on cuDNN's bf16 kernels; what neither takes
// (grouped convolutions other than depthwise, O not a multiple of 8, no bf16 algorithm) runs
// conv2d_*_f32 at TF32 on f32 NCHW copies, bf16 NHWC out.
int64_t conv2d_filter_elems_nhwc_bf16(const Conv2dGeometry& g) {
  if (depthwise_nhwc_bf16_fits(g)) return 0;  // its kernels read the f32 weight
  const Bf16Route route = bf16_route(g);
  if (route != Bf16Route::kCudnn) return ConvAsGemm(g, route).filter_elems();
  const std::optional<Conv2dGeometry> gc = bf16_geometry(g);
  return gc ? Bf16Nhwc(g, *gc).filter_elems() : 0;
}

void conv2d_filter_nhwc_bf16(const Conv2dGeometry& g, const float* w, uint16_t* filter) {
  MDQ_CHECK(conv2d_filter_elems_nhwc_bf16(g) > 0, "conv2d_filter_nhwc_bf16: this convolution reads its f32 weight");
  const Bf16Route route = bf16_route(g);
  if (route != Bf16Route::kCudnn) return ConvAsGemm(g, route).make_filter(w, filter);
  Bf16Nhwc(g, *bf16_geometry(g)).make_filter(w, filter);
}

void conv2d_forward_nhwc_bf16(const Conv2dGeometry& g, const uint16_t* x, const float* w, const uint16_t* filter,
                              const float* bias, uint16_t* y) {
  if (depthwise_nhwc_bf16_fits(g)) return depthwise_forward_nhwc_bf16(g, x, w, bias, y);  // kernels/depthwise_nhwc.cu
  const Bf16Route route = bf16_route(g);
  bool done = route != Bf16Route::kCudnn;
  if (done) {
    ConvAsGemm(g, route, filter).forward(x, w, y);
  } else {
    done = on_bf16_plan(g, kForward, filter, [&](cudnnHandle_t h, Plan& pl, Bf16Nhwc& op) {
      return forward(h, pl, Precision::BF16, op.x(x), op.w(w), y);
    });
  }
  if (done) {
    if (bias) affine_act_nhwc<uint16_t>(y, nullptr, bias, nullptr, false, y, g.N * g.OH * g.OW, int(g.O));
    return;
  }
  const Bf16Operands op{g};
  DeviceScratch<float> x32(op.x_elems()), y32(op.y_elems());
  nhwc_bf16_to_nchw_f32(x, x32.get(), g.N, g.H * g.W, int(g.C));
  conv2d_forward_f32(g, Precision::TF32, x32.get(), w, bias, y32.get());
  nchw_f32_to_nhwc<uint16_t>(y32.get(), y, g.N, int(g.O), g.OH * g.OW);
}

void conv2d_backward_nhwc_bf16(const Conv2dGeometry& g, const uint16_t* dy, const uint16_t* x, const float* w,
                               const uint16_t* filter, uint16_t* dx, float* dw) {
  if (depthwise_nhwc_bf16_fits(g)) return depthwise_backward_nhwc_bf16(g, dy, x, w, dx, dw);
  const Bf16Route route = bf16_route(g);
  const bool gemm_dx = route == Bf16Route::kGemm1x1, gemm_dw = route != Bf16Route::kCudnn;
  ConvAsGemm gemm(g, route, filter);
  if (dx && gemm_dx) gemm.backward_data(dy, w, dx);
  if (dw && gemm_dw) gemm.backward_filter(dy, x, dw);
  // The im2col route's dx runs on cuDNN, whose filter has a layout of its own: made there from w.
  const uint16_t* cudnn_filter = route == Bf16Route::kCudnn ? filter : nullptr;
  const bool dx_done =
      !dx || gemm_dx || on_bf16_plan(g, kBackwardData, cudnn_filter, [&](cudnnHandle_t h, Plan& pl, Bf16Nhwc& op) {
    if (!backward_data(h, pl, Precision::BF16, dy, op.w(w), op.dx_target(dx))) return false;
    op.dx_done(dx);
    return true;
  });
  const bool dw_done =
      !dw || gemm_dw || on_bf16_plan(g, kBackwardFilter, cudnn_filter, [&](cudnnHandle_t h, Plan& pl, Bf16Nhwc& op) {
    if (!backward_filter(h, pl, Precision::BF16, dy, op.x(x), op.dw_target())) return false;
    op.dw_done(dw);
    return true;
  });
  if (dx_done && dw_done) return;
  const Bf16Operands op{g};
  DeviceScratch<float> dy32(op.y_elems());
  nhwc_bf16_to_nchw_f32(dy, dy32.get(), g.N, g.OH * g.OW, int(g.O));
  std::optional<DeviceScratch<float>> x32, dx32;
  if (!dw_done) nhwc_bf16_to_nchw_f32(x, x32.emplace(op.x_elems()).get(), g.N, g.H * g.W, int(g.C));
  if (!dx_done) dx32.emplace(op.x_elems());
  conv2d_backward_f32(g, Precision::TF32, dy32.get(), dw_done ? nullptr : x32->get(), w,
                      dx_done ? nullptr : dx32->get(), false, dw_done ? nullptr : dw);
  if (!dx_done) nchw_f32_to_nhwc<uint16_t>(dx32->get(), dx, g.N, int(g.C), g.H * g.W);
}

void conv2d_backward_bias_f32(int64_t N, int64_t O, int64_t OH, int64_t OW, const float* dy, float* db) {
  // Descriptors per grad_out shape; the same small-map idea as the plans.
  static std::map<std::array<int64_t, 4>, std::pair<cudnnTensorDescriptor_t, cudnnTensorDescriptor_t>> descs;
  cudnnHandle_t h = cuda::cudnn();
  std::lock_guard<std::mutex> lock(g_mutex);
  const std::array<int64_t, 4> s{N, O, OH, OW};
  auto it = descs.find(s);
  if (it == descs.end())
    it = descs.emplace(s, std::make_pair(tensor_desc(N, O, OH, OW, false), tensor_desc(1, O, 1, 1, false))).first;
  CUDNN_CHECK(cudnnConvolutionBackwardBias(h, &kOne, it->second.first, dy, &kZero, it->second.second, db));
}

CudnnConvChoices cudnn_conv2d_choices(const Conv2dGeometry& g, Precision prec) {
  std::lock_guard<std::mutex> lock(g_mutex);
  const bool bf16 = prec == Precision::BF16 && bf16_fits(g);
  if (prec == Precision::BF16 && !bf16) prec = Precision::TF32;
  const Plan& pl = plan_for(g, prec);
  auto first = [&](Direction d) { return pl.ranked[d].empty() ? CudnnConvChoice{} : pl.ranked[d].front(); };
  return {first(kForward), first(kBackwardData), first(kBackwardFilter), bf16};
}

void register_conv2d(CudaBackend& b) {
  b.conv2d_forward_f32 = conv2d_forward_f32;
  b.conv2d_backward_f32 = conv2d_backward_f32;
  b.conv2d_backward_bias_f32 = conv2d_backward_bias_f32;
  b.conv2d_forward_nhwc_bf16 = conv2d_forward_nhwc_bf16;
  b.conv2d_backward_nhwc_bf16 = conv2d_backward_nhwc_bf16;
  b.conv2d_filter_elems_nhwc_bf16 = conv2d_filter_elems_nhwc_bf16;
  b.conv2d_filter_nhwc_bf16 = conv2d_filter_nhwc_bf16;
  b.cudnn_conv2d_choices = cudnn_conv2d_choices;
}

}  // namespace mdq::kernels

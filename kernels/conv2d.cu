// The cuDNN path of 2-D convolution (kernels/conv2d.h): NCHW f32, descriptors and algorithm
// choices cached per shape and precision, all work on mdq::cuda::stream().
//
// Why a cache: building four descriptors and searching algorithms costs far more than a small
// convolution, and a training run sees the same few shapes every step. A plan (descriptors) is
// built on a shape's first call; each direction's algorithm is found with
// cudnnFind*AlgorithmEx on that direction's first call, using the call's own buffers (the
// search writes the output, which the real call then overwrites). Among the algorithms that
// ran, the fastest deterministic one wins, so a run repeats bit for bit; a nondeterministic
// one only when nothing else works.
//
// Precision (the engine's mdq::precision(), passed with each call and part of the cache key):
//   FP32 -> CUDNN_FMA_MATH: true fp32, no tensor cores.
//   TF32 -> CUDNN_DEFAULT_MATH: cuDNN may use TF32 tensor cores on Ampere/Hopper.
//   BF16 -> treated as TF32 here. A real bf16 path needs bf16 copies of x, w and dy (a small
//           conversion kernel) and fp32 grads converted back; not done yet, so bf16 runs
//           convolutions at TF32 accuracy and speed.
#include <array>
#include <climits>
#include <map>
#include <mutex>
#include <tuple>
#include <utility>
#include <vector>

#include "common/error.h"
#include "kernels/backend.h"
#include "kernels/conv2d.h"
#include "kernels/cuda_common.h"

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
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, bias = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  // One convolution descriptor per direction, so each can carry the math type its algorithm wants.
  cudnnConvolutionDescriptor_t conv[3] = {nullptr, nullptr, nullptr};
  CudnnConvChoice choice[3];
};

std::mutex g_mutex;
std::map<Key, Plan> g_plans;  // never freed: descriptors are tiny and live to process exit

int to_int(int64_t v, const char* what) {
  MDQ_CHECK(v >= 0 && v <= INT_MAX, "conv2d (cuDNN): " << what << " " << v << " does not fit cuDNN's int");
  return static_cast<int>(v);
}

cudnnMathType_t math_type_for(Precision p) {
  // BF16 is treated as TF32: see the file comment.
  return p == Precision::FP32 ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH;
}

cudnnTensorDescriptor_t tensor_desc(int64_t n, int64_t c, int64_t h, int64_t w) {
  MDQ_CHECK(n * c * h * w <= INT_MAX, "conv2d (cuDNN): tensor [" << n << ", " << c << ", " << h << ", " << w
                                                                  << "] has more than 2^31 elements; split the batch");
  cudnnTensorDescriptor_t d;
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&d));
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, to_int(n, "N"), to_int(c, "C"),
                                         to_int(h, "H"), to_int(w, "W")));
  return d;
}

// The plan for this shape under precision prec; builds descriptors on first use. Caller holds
// g_mutex.
Plan& plan_for(const Conv2dGeometry& g, Precision prec) {
  Key key{{g.N, g.C, g.H, g.W, g.O, g.Cg, g.KH, g.KW, g.stride, g.pad, g.groups}, static_cast<int>(prec)};
  auto it = g_plans.find(key);
  if (it != g_plans.end()) return it->second;

  Plan pl;
  pl.x = tensor_desc(g.N, g.C, g.H, g.W);
  CUDNN_CHECK(cudnnCreateFilterDescriptor(&pl.w));
  CUDNN_CHECK(cudnnSetFilter4dDescriptor(pl.w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, to_int(g.O, "O"),
                                         to_int(g.Cg, "C/groups"), to_int(g.KH, "KH"), to_int(g.KW, "KW")));
  for (int d = 0; d < 3; ++d) {
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&pl.conv[d]));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(pl.conv[d], to_int(g.pad, "padding"), to_int(g.pad, "padding"),
                                                to_int(g.stride, "stride"), to_int(g.stride, "stride"), 1, 1,
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionGroupCount(pl.conv[d], to_int(g.groups, "groups")));
    CUDNN_CHECK(cudnnSetConvolutionMathType(pl.conv[d], math_type_for(prec)));
    pl.choice[d].math_type = static_cast<int>(math_type_for(prec));
  }
  int n, c, h, w;
  CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(pl.conv[kForward], pl.x, pl.w, &n, &c, &h, &w));
  MDQ_CHECK(n == g.N && c == g.O && h == g.OH && w == g.OW,
            "conv2d (cuDNN): cuDNN's output shape [" << n << ", " << c << ", " << h << ", " << w
                                                     << "] differs from mdq's [" << g.N << ", " << g.O << ", " << g.OH
                                                     << ", " << g.OW << "]");
  pl.y = tensor_desc(g.N, g.O, g.OH, g.OW);
  pl.bias = tensor_desc(1, g.O, 1, 1);
  return g_plans.emplace(key, pl).first->second;
}

// Index of the fastest deterministic successful result (perf is sorted by time), else of the
// fastest successful one; -1 when none ran. Results timed with a math type this precision does
// not allow are skipped: tensor ops under FP32, fp16 down-conversion ever.
template <class Perf>
int pick(const std::vector<Perf>& perf, int returned, Precision prec) {
  const bool fp32 = prec == Precision::FP32;
  int best = -1;
  for (int i = 0; i < returned; ++i) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
    if (perf[i].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;
    if (fp32 && perf[i].mathType == CUDNN_TENSOR_OP_MATH) continue;
    if (perf[i].determinism == CUDNN_DETERMINISTIC) return i;
    if (best < 0) best = i;
  }
  return best;
}

template <class Perf>
void record_choice(Plan& pl, Direction d, const std::vector<Perf>& perf, int returned, Precision prec,
                   const char* what) {
  const int i = pick(perf, returned, prec);
  MDQ_CHECK(i >= 0, "conv2d (cuDNN): no " << what << " algorithm runs for this shape within "
                                          << (kFindWorkspaceLimit >> 20) << " MiB of workspace");
  pl.choice[d].algo = static_cast<int>(perf[i].algo);
  pl.choice[d].workspace_bytes = perf[i].memory;
  // Under FP32 the descriptor stays FMA-only; otherwise follow what the winner was timed with.
  if (prec != Precision::FP32) {
    CUDNN_CHECK(cudnnSetConvolutionMathType(pl.conv[d], perf[i].mathType));
    pl.choice[d].math_type = static_cast<int>(perf[i].mathType);
  }
}

// The algorithm of direction d for this plan: found on the direction's first call with that
// call's own buffers (find(count, &returned, perf, workspace, bytes) runs the cuDNN search, which
// writes the output that the real call then overwrites), cached in the plan afterwards.
template <class Perf, class Find>
const CudnnConvChoice& choose(cudnnHandle_t h, Plan& pl, Direction d, Precision prec, const char* what,
                              cudnnStatus_t (*max_count_of)(cudnnHandle_t, int*), Find find) {
  CudnnConvChoice& ch = pl.choice[d];
  if (ch.algo >= 0) return ch;
  int max_count = 0, returned = 0;
  CUDNN_CHECK(max_count_of(h, &max_count));
  std::vector<Perf> perf(max_count);
  find(max_count, &returned, perf.data(), cuda::workspace(kFindWorkspaceLimit), kFindWorkspaceLimit);
  record_choice(pl, d, perf, returned, prec, what);
  return ch;
}

const float kOne = 1.f, kZero = 0.f;

}  // namespace

void conv2d_forward_f32(const Conv2dGeometry& g, Precision prec, const float* x, const float* w, const float* bias,
                        float* y) {
  cudnnHandle_t h = cuda::cudnn();
  std::lock_guard<std::mutex> lock(g_mutex);
  Plan& pl = plan_for(g, prec);
  const CudnnConvChoice& ch = choose<cudnnConvolutionFwdAlgoPerf_t>(
      h, pl, kForward, prec, "forward", cudnnGetConvolutionForwardAlgorithmMaxCount,
      [&](int count, int* returned, cudnnConvolutionFwdAlgoPerf_t* perf, void* ws, size_t bytes) {
        CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(h, pl.x, x, pl.w, w, pl.conv[kForward], pl.y, y, count,
                                                           returned, perf, ws, bytes));
      });
  CUDNN_CHECK(cudnnConvolutionForward(h, &kOne, pl.x, x, pl.w, w, pl.conv[kForward],
                                      static_cast<cudnnConvolutionFwdAlgo_t>(ch.algo),
                                      cuda::workspace(ch.workspace_bytes), ch.workspace_bytes, &kZero, pl.y, y));
  if (bias) CUDNN_CHECK(cudnnAddTensor(h, &kOne, pl.bias, bias, &kOne, pl.y, y));
}

void conv2d_backward_input_f32(const Conv2dGeometry& g, Precision prec, const float* dy, const float* w, float* dx) {
  cudnnHandle_t h = cuda::cudnn();
  std::lock_guard<std::mutex> lock(g_mutex);
  Plan& pl = plan_for(g, prec);
  const CudnnConvChoice& ch = choose<cudnnConvolutionBwdDataAlgoPerf_t>(
      h, pl, kBackwardData, prec, "backward-data", cudnnGetConvolutionBackwardDataAlgorithmMaxCount,
      [&](int count, int* returned, cudnnConvolutionBwdDataAlgoPerf_t* perf, void* ws, size_t bytes) {
        CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(h, pl.w, w, pl.y, dy, pl.conv[kBackwardData], pl.x, dx,
                                                                count, returned, perf, ws, bytes));
      });
  CUDNN_CHECK(cudnnConvolutionBackwardData(h, &kOne, pl.w, w, pl.y, dy, pl.conv[kBackwardData],
                                           static_cast<cudnnConvolutionBwdDataAlgo_t>(ch.algo),
                                           cuda::workspace(ch.workspace_bytes), ch.workspace_bytes, &kZero, pl.x, dx));
}

void conv2d_backward_weight_f32(const Conv2dGeometry& g, Precision prec, const float* dy, const float* x, float* dw) {
  cudnnHandle_t h = cuda::cudnn();
  std::lock_guard<std::mutex> lock(g_mutex);
  Plan& pl = plan_for(g, prec);
  const CudnnConvChoice& ch = choose<cudnnConvolutionBwdFilterAlgoPerf_t>(
      h, pl, kBackwardFilter, prec, "backward-filter", cudnnGetConvolutionBackwardFilterAlgorithmMaxCount,
      [&](int count, int* returned, cudnnConvolutionBwdFilterAlgoPerf_t* perf, void* ws, size_t bytes) {
        CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(h, pl.x, x, pl.y, dy, pl.conv[kBackwardFilter], pl.w,
                                                                  dw, count, returned, perf, ws, bytes));
      });
  CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &kOne, pl.x, x, pl.y, dy, pl.conv[kBackwardFilter],
                                             static_cast<cudnnConvolutionBwdFilterAlgo_t>(ch.algo),
                                             cuda::workspace(ch.workspace_bytes), ch.workspace_bytes, &kZero, pl.w,
                                             dw));
}

void conv2d_backward_bias_f32(int64_t N, int64_t O, int64_t OH, int64_t OW, const float* dy, float* db) {
  // Descriptors per grad_out shape; the same small-map idea as the plans.
  static std::map<std::array<int64_t, 4>, std::pair<cudnnTensorDescriptor_t, cudnnTensorDescriptor_t>> descs;
  cudnnHandle_t h = cuda::cudnn();
  std::lock_guard<std::mutex> lock(g_mutex);
  const std::array<int64_t, 4> s{N, O, OH, OW};
  auto it = descs.find(s);
  if (it == descs.end())
    it = descs.emplace(s, std::make_pair(tensor_desc(N, O, OH, OW), tensor_desc(1, O, 1, 1))).first;
  CUDNN_CHECK(cudnnConvolutionBackwardBias(h, &kOne, it->second.first, dy, &kZero, it->second.second, db));
}

CudnnConvChoices cudnn_conv2d_choices(const Conv2dGeometry& g, Precision prec) {
  std::lock_guard<std::mutex> lock(g_mutex);
  const Plan& pl = plan_for(g, prec);
  return {pl.choice[kForward], pl.choice[kBackwardData], pl.choice[kBackwardFilter]};
}

void register_conv2d(CudaBackend& b) {
  b.conv2d_forward_f32 = conv2d_forward_f32;
  b.conv2d_backward_input_f32 = conv2d_backward_input_f32;
  b.conv2d_backward_weight_f32 = conv2d_backward_weight_f32;
  b.conv2d_backward_bias_f32 = conv2d_backward_bias_f32;
  b.cudnn_conv2d_choices = cudnn_conv2d_choices;
}

}  // namespace mdq::kernels

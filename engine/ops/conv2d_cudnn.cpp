// The cuDNN path of 2-D convolution (engine/ops/conv2d.h): NCHW f32 tensors, descriptors and
// algorithm choices cached per shape, all work on mdq::cuda::stream().
//
// Why a cache: building four descriptors and searching algorithms costs far more than a small
// convolution, and a training run sees the same few shapes every step. A plan (descriptors) is
// built on a shape's first call; each direction's algorithm is found with
// cudnnFind*AlgorithmEx on that direction's first call, using the call's own buffers (the
// search writes the output, which the real call then overwrites). Among the algorithms that
// ran, the fastest deterministic one wins, so a run repeats bit for bit; a nondeterministic
// one only when nothing else works.
//
// Precision (mdq::precision(), read per call and part of the cache key):
//   FP32 -> CUDNN_FMA_MATH: true fp32, no tensor cores.
//   TF32 -> CUDNN_DEFAULT_MATH: cuDNN may use TF32 tensor cores on Ampere/Hopper.
//   BF16 -> treated as TF32 here. A real bf16 path needs bf16 copies of x, w and dy (a small
//           conversion kernel) and fp32 grads converted back; not done yet, so bf16 runs
//           convolutions at TF32 accuracy and speed.
#ifdef MDQ_HAS_CUDA
#include <array>
#include <climits>
#include <map>
#include <mutex>
#include <tuple>
#include <utility>
#include <vector>

#include "engine/cuda_context.h"
#include "engine/ops/conv2d.h"
#include "engine/precision.h"

namespace mdq::ops::cudnn_conv {
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
  Choice choice[3];
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

// The plan for this shape under the current precision; builds descriptors on first use.
// Caller holds g_mutex.
Plan& plan_for(const Shape& xs, const Shape& ws, const Conv2dParams& p) {
  const Precision prec = precision();
  Key key{{xs[0], xs[1], xs[2], xs[3], ws[0], ws[1], ws[2], ws[3], p.stride, p.padding, p.groups},
          static_cast<int>(prec)};
  auto it = g_plans.find(key);
  if (it != g_plans.end()) return it->second;

  Plan pl;
  pl.x = tensor_desc(xs[0], xs[1], xs[2], xs[3]);
  CUDNN_CHECK(cudnnCreateFilterDescriptor(&pl.w));
  CUDNN_CHECK(cudnnSetFilter4dDescriptor(pl.w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, to_int(ws[0], "O"),
                                         to_int(ws[1], "C/groups"), to_int(ws[2], "KH"), to_int(ws[3], "KW")));
  for (int d = 0; d < 3; ++d) {
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&pl.conv[d]));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(pl.conv[d], to_int(p.padding, "padding"), to_int(p.padding, "padding"),
                                                to_int(p.stride, "stride"), to_int(p.stride, "stride"), 1, 1,
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionGroupCount(pl.conv[d], to_int(p.groups, "groups")));
    CUDNN_CHECK(cudnnSetConvolutionMathType(pl.conv[d], math_type_for(prec)));
    pl.choice[d].math_type = static_cast<int>(math_type_for(prec));
  }
  const Shape ys = conv2d_output_shape(xs, ws, p);
  int n, c, h, w;
  CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(pl.conv[kForward], pl.x, pl.w, &n, &c, &h, &w));
  MDQ_CHECK(Shape({n, c, h, w}) == ys, "conv2d (cuDNN): cuDNN's output shape [" << n << ", " << c << ", " << h << ", "
                                                                                  << w << "] differs from mdq's " << shape_str(ys));
  pl.y = tensor_desc(ys[0], ys[1], ys[2], ys[3]);
  pl.bias = tensor_desc(1, ys[1], 1, 1);
  return g_plans.emplace(key, pl).first->second;
}

// Index of the fastest deterministic successful result (perf is sorted by time), else of the
// fastest successful one; -1 when none ran. Results timed with a math type this precision does
// not allow are skipped: tensor ops under FP32, fp16 down-conversion ever.
template <class Perf>
int pick(const std::vector<Perf>& perf, int returned) {
  const bool fp32 = precision() == Precision::FP32;
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
void record_choice(Plan& pl, Direction d, const std::vector<Perf>& perf, int returned, const char* what) {
  const int i = pick(perf, returned);
  MDQ_CHECK(i >= 0, "conv2d (cuDNN): no " << what << " algorithm runs for this shape within "
                                          << (kFindWorkspaceLimit >> 20) << " MiB of workspace");
  pl.choice[d].algo = static_cast<int>(perf[i].algo);
  pl.choice[d].workspace_bytes = perf[i].memory;
  // Under FP32 the descriptor stays FMA-only; otherwise follow what the winner was timed with.
  if (precision() != Precision::FP32) {
    CUDNN_CHECK(cudnnSetConvolutionMathType(pl.conv[d], perf[i].mathType));
    pl.choice[d].math_type = static_cast<int>(perf[i].mathType);
  }
}

const float kOne = 1.f, kZero = 0.f;

}  // namespace

void forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p, Tensor& y) {
  cudnnHandle_t h = cuda::cudnn();
  std::lock_guard<std::mutex> lock(g_mutex);
  Plan& pl = plan_for(x.shape(), w.shape(), p);
  Choice& ch = pl.choice[kForward];
  if (ch.algo < 0) {
    int max_count = 0, returned = 0;
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &max_count));
    std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(max_count);
    CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(h, pl.x, x.raw(), pl.w, w.raw(), pl.conv[kForward], pl.y, y.raw(),
                                                       max_count, &returned, perf.data(),
                                                       cuda::workspace(kFindWorkspaceLimit), kFindWorkspaceLimit));
    record_choice(pl, kForward, perf, returned, "forward");
  }
  CUDNN_CHECK(cudnnConvolutionForward(h, &kOne, pl.x, x.raw(), pl.w, w.raw(), pl.conv[kForward],
                                      static_cast<cudnnConvolutionFwdAlgo_t>(ch.algo),
                                      cuda::workspace(ch.workspace_bytes), ch.workspace_bytes, &kZero, pl.y, y.raw()));
  if (bias.defined()) CUDNN_CHECK(cudnnAddTensor(h, &kOne, pl.bias, bias.raw(), &kOne, pl.y, y.raw()));
}

void backward_input(const Tensor& dy, const Tensor& w, const Conv2dParams& p, Tensor& dx) {
  cudnnHandle_t h = cuda::cudnn();
  std::lock_guard<std::mutex> lock(g_mutex);
  Plan& pl = plan_for(dx.shape(), w.shape(), p);
  Choice& ch = pl.choice[kBackwardData];
  if (ch.algo < 0) {
    int max_count = 0, returned = 0;
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &max_count));
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(max_count);
    CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(
        h, pl.w, w.raw(), pl.y, dy.raw(), pl.conv[kBackwardData], pl.x, dx.raw(), max_count, &returned, perf.data(),
        cuda::workspace(kFindWorkspaceLimit), kFindWorkspaceLimit));
    record_choice(pl, kBackwardData, perf, returned, "backward-data");
  }
  CUDNN_CHECK(cudnnConvolutionBackwardData(h, &kOne, pl.w, w.raw(), pl.y, dy.raw(), pl.conv[kBackwardData],
                                           static_cast<cudnnConvolutionBwdDataAlgo_t>(ch.algo),
                                           cuda::workspace(ch.workspace_bytes), ch.workspace_bytes, &kZero, pl.x,
                                           dx.raw()));
}

void backward_weight(const Tensor& dy, const Tensor& x, const Conv2dParams& p, Tensor& dw) {
  cudnnHandle_t h = cuda::cudnn();
  std::lock_guard<std::mutex> lock(g_mutex);
  Plan& pl = plan_for(x.shape(), dw.shape(), p);
  Choice& ch = pl.choice[kBackwardFilter];
  if (ch.algo < 0) {
    int max_count = 0, returned = 0;
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &max_count));
    std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(max_count);
    CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(
        h, pl.x, x.raw(), pl.y, dy.raw(), pl.conv[kBackwardFilter], pl.w, dw.raw(), max_count, &returned, perf.data(),
        cuda::workspace(kFindWorkspaceLimit), kFindWorkspaceLimit));
    record_choice(pl, kBackwardFilter, perf, returned, "backward-filter");
  }
  CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &kOne, pl.x, x.raw(), pl.y, dy.raw(), pl.conv[kBackwardFilter],
                                             static_cast<cudnnConvolutionBwdFilterAlgo_t>(ch.algo),
                                             cuda::workspace(ch.workspace_bytes), ch.workspace_bytes, &kZero, pl.w,
                                             dw.raw()));
}

void backward_bias(const Tensor& dy, Tensor& db) {
  // Descriptors per grad_out shape; the same small-map idea as the plans.
  static std::map<Shape, std::pair<cudnnTensorDescriptor_t, cudnnTensorDescriptor_t>> descs;
  cudnnHandle_t h = cuda::cudnn();
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = descs.find(dy.shape());
  if (it == descs.end()) {
    const Shape& s = dy.shape();
    it = descs.emplace(s, std::make_pair(tensor_desc(s[0], s[1], s[2], s[3]), tensor_desc(1, s[1], 1, 1))).first;
  }
  CUDNN_CHECK(cudnnConvolutionBackwardBias(h, &kOne, it->second.first, dy.raw(), &kZero, it->second.second, db.raw()));
}

Choices choices(const Shape& x_shape, const Shape& w_shape, const Conv2dParams& p) {
  conv2d_output_shape(x_shape, w_shape, p);  // checks the operands
  std::lock_guard<std::mutex> lock(g_mutex);
  const Plan& pl = plan_for(x_shape, w_shape, p);
  return {pl.choice[kForward], pl.choice[kBackwardData], pl.choice[kBackwardFilter]};
}

}  // namespace mdq::ops::cudnn_conv
#endif  // MDQ_HAS_CUDA

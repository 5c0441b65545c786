// One cuDNN convolution in NHWC for the packed-kernel benchmarks (the baselines they are measured
// against): fp32 (FMA math, no TF32), tf32 or bf16 tensors; its algorithms are ranked once per
// shape and precision (cudnnFind) and cached for the process. run() uses the fastest, and moves to
// the next when cuDNN refuses it at run time (seen on an H200: an algorithm that Find timed then
// returned CUDNN_STATUS_BAD_PARAM). A shape cuDNN has no algorithm for leaves found false and why
// set, and run() refuses it.
#pragma once
#include <cudnn.h>

#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "kernels/cuda_common.h"
#include "common/error.h"
#include "engine/tensor.h"

enum class CudnnMode { FP32, TF32, BF16 };

class CudnnConv {
 public:
  CudnnConv(int N, int C, int H, int W, int O, int K, int stride, int pad, CudnnMode mode = CudnnMode::BF16)
      : OH((H + 2 * pad - K) / stride + 1), OW((W + 2 * pad - K) / stride + 1) {
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&xd_));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&yd_));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&wd_));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&cd_));
    const cudnnDataType_t dt = mode == CudnnMode::BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(xd_, CUDNN_TENSOR_NHWC, dt, N, C, H, W));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(yd_, CUDNN_TENSOR_NHWC, dt, N, O, OH, OW));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(wd_, dt, CUDNN_TENSOR_NHWC, O, C, K, K));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(cd_, pad, pad, stride, stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                                CUDNN_DATA_FLOAT));
    // FMA_MATH keeps fp32 off the TF32 tensor cores.
    CUDNN_CHECK(cudnnSetConvolutionMathType(cd_, mode == CudnnMode::FP32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH));
    static std::map<std::tuple<int, int, int, int, int, int, int, int, int>, std::vector<Algo>> found_algos;
    const auto key = std::make_tuple(N, C, H, W, O, K, stride, pad, static_cast<int>(mode));
    if (auto it = found_algos.find(key); it != found_algos.end()) {
      algos_ = it->second;
      found = true;
      return;
    }
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int count = 0;
    const cudnnStatus_t st = cudnnFindConvolutionForwardAlgorithm(mdq::cuda::cudnn(), xd_, wd_, cd_, yd_,
                                                                  CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &count, perf);
    if (st != CUDNN_STATUS_SUCCESS) {
      why = cudnnGetErrorString(st);
      return;
    }
    for (int i = 0; i < count; ++i)
      if (perf[i].status == CUDNN_STATUS_SUCCESS) algos_.push_back({perf[i].algo, perf[i].memory});
    found = !algos_.empty();
    if (found)
      found_algos[key] = algos_;
    else
      why = "no algorithm succeeded";
  }
  CudnnConv(const CudnnConv&) = delete;
  CudnnConv& operator=(const CudnnConv&) = delete;
  ~CudnnConv() {
    cudnnDestroyTensorDescriptor(xd_);
    cudnnDestroyTensorDescriptor(yd_);
    cudnnDestroyFilterDescriptor(wd_);
    cudnnDestroyConvolutionDescriptor(cd_);
  }
  // x [N][H][W][C], w [O][K][K][C], y [N][OH][OW][O], in the mode's element type.
  void run(const mdq::Tensor& x, const mdq::Tensor& w, mdq::Tensor& y) const {
    MDQ_CHECK(found, "CudnnConv: no NHWC algorithm (" << why << ") for " << x.describe() << " * " << w.describe());
    const float one = 1.f, zero = 0.f;
    for (;; ++next_) {
      MDQ_CHECK(next_ < algos_.size(), "CudnnConv: cuDNN refused every algorithm Find ranked for " << x.describe());
      const Algo& a = algos_[next_];
      void* work = a.ws ? mdq::cuda::workspace(a.ws) : nullptr;
      const cudnnStatus_t st = cudnnConvolutionForward(mdq::cuda::cudnn(), &one, xd_, x.raw(), wd_, w.raw(), cd_,
                                                       a.algo, work, a.ws, &zero, yd_, y.raw());
      if (st == CUDNN_STATUS_SUCCESS) return;
      if (st != CUDNN_STATUS_BAD_PARAM && st != CUDNN_STATUS_NOT_SUPPORTED) CUDNN_CHECK(st);
    }
  }
  const int OH, OW;
  bool found = false;
  std::string why;

 private:
  cudnnTensorDescriptor_t xd_, yd_;
  cudnnFilterDescriptor_t wd_;
  cudnnConvolutionDescriptor_t cd_;
  struct Algo {
    cudnnConvolutionFwdAlgo_t algo;
    size_t ws;
  };
  std::vector<Algo> algos_;  // fastest first
  mutable size_t next_ = 0;  // the one run() uses
};

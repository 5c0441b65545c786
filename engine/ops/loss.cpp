// Softmax cross-entropy and top-k counts: CPU reference loops and dispatch to kernels/loss.cu.
#include "engine/ops/loss.h"

#include "engine/device.h"
#include "kernels/label_rank.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#ifdef MDQ_HAS_CUDA
#include "kernels/cuda_common.h"
#include "kernels/loss.h"
#endif

namespace mdq::ops {
namespace {

void check_logits_labels(const char* op, const Tensor& logits, const Tensor& labels) {
  check_dtype(op, logits, DType::F32);
  check_dtype(op, labels, DType::I32);
  MDQ_CHECK(logits.ndim() == 2 && labels.ndim() == 1 && labels.dim(0) == logits.dim(0),
            op << ": expected logits [N, K] and labels [N], got " << logits.describe() << " vs " << labels.describe());
  check_same_device(op, logits, labels);
  MDQ_CHECK(logits.dim(1) > 0, op << ": logits " << logits.describe() << " have no classes");
  MDQ_CHECK(logits.dim(0) < (int64_t{1} << 31), op << ": too many rows in " << logits.describe());
}

[[noreturn]] void throw_bad_label(const char* op, const Tensor& logits, int64_t index, int32_t value) {
  MDQ_FAIL(op << ": label " << value << " at index " << index << " is out of range for K = " << logits.dim(1)
              << " classes (logits " << logits.describe() << "); labels must lie in [0, " << logits.dim(1) << ")");
}

void check_labels_cpu(const char* op, const Tensor& logits, const Tensor& labels) {
  const int32_t* lab = labels.data<int32_t>();
  for (int64_t i = 0; i < labels.numel(); ++i)
    if (lab[i] < 0 || lab[i] >= logits.dim(1)) throw_bad_label(op, logits, i, lab[i]);
}

#ifdef MDQ_HAS_CUDA
// The one small sync of a GPU op: copies n counters the kernels wrote back to the host.
void read_back(const uint32_t* device, uint32_t* host, size_t n) {
  CUDA_CHECK(cudaMemcpyAsync(host, device, n * sizeof(uint32_t), cudaMemcpyDeviceToHost, cuda::stream()));
  CUDA_CHECK(cudaStreamSynchronize(cuda::stream()));
}

// bad_slot as the kernels left it (kernels/loss.h): 0, or rows - (first bad row). Only on the
// error path is the offending label itself read back, for the message.
void check_bad_slot(const char* op, const Tensor& logits, const Tensor& labels, uint32_t bad_slot) {
  if (bad_slot == 0) return;
  const int64_t index = logits.dim(0) - static_cast<int64_t>(bad_slot);
  int32_t value = 0;
  CUDA_CHECK(cudaMemcpyAsync(&value, labels.data<int32_t>() + index, sizeof(value), cudaMemcpyDeviceToHost,
                             cuda::stream()));
  CUDA_CHECK(cudaStreamSynchronize(cuda::stream()));
  throw_bad_label(op, logits, index, value);
}

// The last deferred check: the kernel's flag lands in pinned memory, ordered by an event.
struct PendingCheck {
  bool active = false;
  Tensor logits, labels;  // kept for the error message
  Tensor bad;             // the device flag, alive until its copy is done
  uint32_t* host = nullptr;
  cudaEvent_t done = nullptr;
};
PendingCheck& pending() {
  static PendingCheck p;
  if (!p.host) {
    CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&p.host), sizeof(uint32_t), cudaHostAllocDefault));
    CUDA_CHECK(cudaEventCreateWithFlags(&p.done, cudaEventDisableTiming));
  }
  return p;
}
#endif

bool g_deferred_label_checks = false;

void check_backward_args(const Tensor& probs, const Tensor& labels) {
  check_logits_labels("cross_entropy_backward", probs, labels);
  if (!probs.is_cuda()) check_labels_cpu("cross_entropy_backward", probs, labels);
}

Tensor backward_impl(const Tensor& probs, const Tensor& labels, float grad_scale, const Tensor* scale_tensor) {
  const int64_t n = probs.dim(0), k = probs.dim(1);
  Tensor grad = Tensor::empty(probs.shape(), DType::F32, probs.device());
  if (probs.is_cuda()) {
#ifdef MDQ_HAS_CUDA
    kernels::cross_entropy_backward_f32(probs.data<float>(), labels.data<int32_t>(), n, k, grad_scale,
                                        scale_tensor ? scale_tensor->data<float>() : nullptr, grad.data<float>());
#endif
    return grad;
  }
  const float s = (scale_tensor ? grad_scale * scale_tensor->data<float>()[0] : grad_scale) / static_cast<float>(n);
  const float* p = probs.data<float>();
  const int32_t* lab = labels.data<int32_t>();
  float* g = grad.data<float>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < k; ++j) g[i * k + j] = (p[i * k + j] - (lab[i] == j ? 1.f : 0.f)) * s;
  return grad;
}

}  // namespace

Tensor cross_entropy_forward(const Tensor& logits, const Tensor& labels, Tensor* probs_out) {
  check_logits_labels("cross_entropy", logits, labels);
  const int64_t n = logits.dim(0), k = logits.dim(1);
  MDQ_CHECK(n > 0, "cross_entropy: the mean over an empty batch is undefined (logits " << logits.describe() << ")");
  float* probs = nullptr;
  if (probs_out) {
    Tensor& p = *probs_out;
    if (!(p.defined() && p.dtype() == DType::F32 && p.shape() == logits.shape() && p.device() == logits.device()))
      p = Tensor::empty(logits.shape(), DType::F32, logits.device());
    probs = p.data<float>();
  }
  Tensor loss = Tensor::empty({1}, DType::F32, logits.device());
  if (logits.is_cuda()) {
#ifdef MDQ_HAS_CUDA
    Tensor row_loss = Tensor::empty({n}, DType::F32, Device::CUDA);
    Tensor bad = Tensor::empty({1}, DType::U32, Device::CUDA);
    kernels::cross_entropy_forward_f32(logits.data<float>(), labels.data<int32_t>(), n, k, probs,
                                       row_loss.data<float>(), loss.data<float>(), bad.data<uint32_t>());
    if (g_deferred_label_checks) {
      check_pending_label_errors();  // the previous step's flag, long since copied
      PendingCheck& p = pending();
      CUDA_CHECK(cudaMemcpyAsync(p.host, bad.data<uint32_t>(), sizeof(uint32_t), cudaMemcpyDeviceToHost,
                                 cuda::stream()));
      CUDA_CHECK(cudaEventRecord(p.done, cuda::stream()));
      p.logits = logits;
      p.labels = labels;
      p.bad = bad;
      p.active = true;
    } else {
      uint32_t bad_slot = 0;
      read_back(bad.data<uint32_t>(), &bad_slot, 1);
      check_bad_slot("cross_entropy", logits, labels, bad_slot);
    }
#endif
    return loss;
  }
  check_labels_cpu("cross_entropy", logits, labels);
  const float* x = logits.data<float>();
  const int32_t* lab = labels.data<int32_t>();
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * k;
    double m = xi[0];
    for (int64_t j = 1; j < k; ++j) m = std::max(m, static_cast<double>(xi[j]));
    double s = 0.0;
    for (int64_t j = 0; j < k; ++j) s += std::exp(xi[j] - m);
    total += std::log(s) + m - xi[lab[i]];
    if (probs)
      for (int64_t j = 0; j < k; ++j) probs[i * k + j] = static_cast<float>(std::exp(xi[j] - m) / s);
  }
  loss.data<float>()[0] = static_cast<float>(total / static_cast<double>(n));
  return loss;
}

void set_deferred_label_checks(bool on) { g_deferred_label_checks = on; }

void check_pending_label_errors() {
#ifdef MDQ_HAS_CUDA
  if (!g_deferred_label_checks || !cuda_available()) return;  // nothing can be pending without a GPU
  PendingCheck& p = pending();
  if (!p.active) return;
  CUDA_CHECK(cudaEventSynchronize(p.done));
  p.active = false;
  const uint32_t bad_slot = *p.host;
  Tensor logits = std::move(p.logits), labels = std::move(p.labels);
  p.bad = Tensor();
  check_bad_slot("cross_entropy", logits, labels, bad_slot);
#endif
}

Tensor cross_entropy_backward(const Tensor& probs, const Tensor& labels, float grad_scale) {
  check_backward_args(probs, labels);
  return backward_impl(probs, labels, grad_scale, nullptr);
}

Tensor cross_entropy_backward(const Tensor& probs, const Tensor& labels, const Tensor& grad_scale) {
  check_backward_args(probs, labels);
  check_dtype("cross_entropy_backward", grad_scale, DType::F32);
  check_same_device("cross_entropy_backward", probs, grad_scale);
  MDQ_CHECK(grad_scale.numel() == 1,
            "cross_entropy_backward: grad_scale must have one element, got " << grad_scale.describe());
  return backward_impl(probs, labels, 1.f, &grad_scale);
}

int64_t count_topk_correct(const Tensor& logits, const Tensor& labels, int k) {
  check_logits_labels("count_topk_correct", logits, labels);
  MDQ_CHECK(k >= 1, "count_topk_correct: k must be at least 1, got " << k << " (logits " << logits.describe() << ")");
  const int64_t n = logits.dim(0), cols = logits.dim(1);
  if (logits.is_cuda()) {
#ifdef MDQ_HAS_CUDA
    Tensor slots = Tensor::empty({2}, DType::U32, Device::CUDA);  // [0] count, [1] bad label
    uint32_t* s = slots.data<uint32_t>();
    kernels::count_topk_correct_f32(logits.data<float>(), labels.data<int32_t>(), n, cols, k, s, s + 1);
    uint32_t host[2] = {0, 0};
    read_back(s, host, 2);
    check_bad_slot("count_topk_correct", logits, labels, host[1]);
    return host[0];
#endif
  }
  check_labels_cpu("count_topk_correct", logits, labels);
  const float* x = logits.data<float>();
  const int32_t* lab = labels.data<int32_t>();
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = rank::label_rank(x + i * cols, cols, lab[i]);
    if (r >= 0 && r < k) ++correct;
  }
  return correct;
}

}  // namespace mdq::ops

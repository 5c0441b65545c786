// Softmax cross-entropy and top-k counts: checks, the CPU reference loops, and one dispatch each
// (the CUDA kernels: kernels/loss.cu). Both backends flag an out-of-range label the same way
// (kernels/loss.h: bad = rows - first bad row); the flag is read back here, at once, or on the
// GPU one step late when label checks are deferred.
#include "engine/ops/loss.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "engine/backend/registry.h"
#include "engine/cuda_graph.h"
#include "engine/device.h"
#include "kernels/label_rank.h"

namespace mdq::ops {
namespace {

using backend::CudaBackend;
using backend::cuda_impl;
using backend::dispatch;

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

// Marks row i's label as bad in the flag (the first bad row leaves the largest value).
void flag_bad_row(uint32_t* bad, int64_t rows, int64_t i) {
  *bad = std::max(*bad, static_cast<uint32_t>(rows - i));
}

// bad_slot as the backend left it: 0, or rows - (first bad row). Only on the error path is the
// offending label itself read back, for the message.
void check_bad_slot(const char* op, const Tensor& logits, const Tensor& labels, uint32_t bad_slot) {
  if (bad_slot == 0) return;
  const int64_t index = logits.dim(0) - static_cast<int64_t>(bad_slot);
  throw_bad_label(op, logits, index, labels.to_vector_i32()[static_cast<size_t>(index)]);
}

// The counters an op left in `slots`, on the host (on the GPU, its one small sync).
std::vector<uint32_t> read_back(const Tensor& slots) {
  const Tensor host = slots.cpu();
  const uint32_t* p = host.data<uint32_t>();
  return std::vector<uint32_t>(p, p + host.numel());
}

// ---- CPU references, with the CUDA launchers' arguments (kernels/loss.h).

void forward_cpu(const float* x, const int32_t* lab, int64_t n, int64_t k, float* probs, float* row_loss, float* loss,
                 uint32_t* bad) {
  *bad = 0;
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (lab[i] < 0 || lab[i] >= k) {
      flag_bad_row(bad, n, i);
      row_loss[i] = 0.f;
      continue;
    }
    const float* xi = x + i * k;
    double m = xi[0];
    for (int64_t j = 1; j < k; ++j) m = std::max(m, static_cast<double>(xi[j]));
    double s = 0.0;
    for (int64_t j = 0; j < k; ++j) s += std::exp(xi[j] - m);
    const double li = std::log(s) + m - xi[lab[i]];
    row_loss[i] = static_cast<float>(li);
    total += li;
    if (probs)
      for (int64_t j = 0; j < k; ++j) probs[i * k + j] = static_cast<float>(std::exp(xi[j] - m) / s);
  }
  loss[0] = static_cast<float>(total / static_cast<double>(n));
}

void backward_cpu(const float* p, const int32_t* lab, int64_t n, int64_t k, float grad_scale, const float* scale,
                  float* g) {
  const float s = (scale ? grad_scale * scale[0] : grad_scale) / static_cast<float>(n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < k; ++j) g[i * k + j] = (p[i * k + j] - (lab[i] == j ? 1.f : 0.f)) * s;
}

void topk_cpu(const float* x, const int32_t* lab, int64_t n, int64_t cols, int k, uint32_t* count, uint32_t* bad) {
  *count = 0;
  *bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (lab[i] < 0 || lab[i] >= cols) {
      flag_bad_row(bad, n, i);
      continue;
    }
    const int64_t r = rank::label_rank(x + i * cols, cols, lab[i]);
    if (r >= 0 && r < k) ++*count;
  }
}

// The last deferred check: the kernel's flag lands in pinned memory, ordered by an event.
struct PendingCheck {
  bool active = false;
  Tensor logits, labels;  // kept for the error message
  Tensor bad;             // the device flag, alive until its copy is done
  uint32_t* host = nullptr;
  void* done = nullptr;  // an event of the CUDA backend
};
PendingCheck& pending() {
  static PendingCheck p;
  if (!p.host) {
    p.host = static_cast<uint32_t*>(cuda_impl("cross_entropy", &CudaBackend::pinned_allocate)(sizeof(uint32_t)));
    p.done = cuda_impl("cross_entropy", &CudaBackend::event_create)();
  }
  return p;
}

// Queues the copy of this step's flag and checks it at the next call (check_pending_label_errors).
void defer_label_check(const Tensor& logits, const Tensor& labels, const Tensor& bad) {
  check_pending_label_errors();  // the previous step's flag, long since copied
  PendingCheck& p = pending();
  const CudaBackend& gpu = backend::cuda();
  gpu.copy_async(p.host, bad.data<uint32_t>(), sizeof(uint32_t), kernels::CopyKind::DeviceToHost);
  gpu.event_record(p.done);
  p.logits = logits;
  p.labels = labels;
  p.bad = bad;
  p.active = true;
}

bool g_deferred_label_checks = false;

// The cross-entropy's label flag `bad` once the kernel that writes it is queued: checked at once
// (one small read back), or, on the GPU with deferred checks, one step late.
void check_or_defer(const Tensor& logits, const Tensor& labels, const Tensor& bad) {
  if (logits.is_cuda() && g_deferred_label_checks)
    defer_label_check(logits, labels, bad);
  else
    check_bad_slot("cross_entropy", logits, labels, read_back(bad)[0]);
}

// The flag of the cross-entropy a CUDA graph captured: each replay rewrites it in place.
struct CapturedCheck {
  Tensor logits, labels, bad;
};
CapturedCheck& captured_check() {
  static CapturedCheck c;
  return c;
}

void check_backward_args(const Tensor& probs, const Tensor& labels) {
  check_logits_labels("cross_entropy_backward", probs, labels);
  if (!probs.is_cuda()) check_labels_cpu("cross_entropy_backward", probs, labels);
}

Tensor backward_impl(const Tensor& probs, const Tensor& labels, float grad_scale, const Tensor* scale_tensor) {
  Tensor grad = Tensor::empty(probs.shape(), DType::F32, probs.device());
  dispatch("cross_entropy_backward", probs.device(), backward_cpu, &CudaBackend::cross_entropy_backward_f32)(
      probs.data<float>(), labels.data<int32_t>(), probs.dim(0), probs.dim(1), grad_scale,
      scale_tensor ? scale_tensor->data<float>() : nullptr, grad.data<float>());
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
  Tensor row_loss = Tensor::empty({n}, DType::F32, logits.device());
  Tensor bad = Tensor::empty({1}, DType::U32, logits.device());
  dispatch("cross_entropy", logits.device(), forward_cpu, &CudaBackend::cross_entropy_forward_f32)(
      logits.data<float>(), labels.data<int32_t>(), n, k, probs, row_loss.data<float>(), loss.data<float>(),
      bad.data<uint32_t>());
  if (logits.is_cuda() && CudaGraph::capturing())
    captured_check() = {logits, labels, bad};  // a capture cannot read back: check_captured_labels
  else
    check_or_defer(logits, labels, bad);
  return loss;
}

void set_deferred_label_checks(bool on) { g_deferred_label_checks = on; }

void check_pending_label_errors() {
  if (!g_deferred_label_checks || !cuda_available()) return;  // nothing can be pending without a GPU
  PendingCheck& p = pending();
  if (!p.active) return;
  backend::cuda().event_wait(p.done);
  p.active = false;
  const uint32_t bad_slot = *p.host;
  Tensor logits = std::move(p.logits), labels = std::move(p.labels);
  p.bad = Tensor();
  check_bad_slot("cross_entropy", logits, labels, bad_slot);
}

void check_captured_labels() {
  const CapturedCheck& c = captured_check();
  if (c.bad.defined()) check_or_defer(c.logits, c.labels, c.bad);
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
  Tensor slots = Tensor::empty({2}, DType::U32, logits.device());  // [0] count, [1] bad label
  uint32_t* s = slots.data<uint32_t>();
  dispatch("count_topk_correct", logits.device(), topk_cpu, &CudaBackend::count_topk_correct_f32)(
      logits.data<float>(), labels.data<int32_t>(), logits.dim(0), logits.dim(1), k, s, s + 1);
  const std::vector<uint32_t> host = read_back(slots);
  check_bad_slot("count_topk_correct", logits, labels, host[1]);
  return host[0];
}

}  // namespace mdq::ops

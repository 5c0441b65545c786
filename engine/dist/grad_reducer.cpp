#include "engine/dist/grad_reducer.h"

#include "engine/ops/copy_spans.h"

namespace mdq::dist {

GradReducer::GradReducer(std::vector<nn::ParamRef> params, Communicator& comm, BucketCaps caps)
    : params_(std::move(params)), comm_(comm) {
  MDQ_CHECK(!params_.empty(), "GradReducer: the model has no parameters");
  std::vector<int64_t> numels;
  for (const nn::ParamRef& p : params_) {
    const Tensor& v = p.var.value();
    check_dtype("GradReducer", v, DType::F32);
    MDQ_CHECK(v.device() == comm_.device(), "GradReducer: parameter " << p.name << " is on " << device_name(v.device())
                                                                      << " but the communicator (" << comm_.describe()
                                                                      << ") works on " << device_name(comm_.device()));
    numels.push_back(v.numel());
  }
  layout_ = make_bucket_layout(numels, caps.cap_bytes, caps.first_cap_bytes);
  for (const BucketLayout::Bucket& b : layout_.buckets) flat_.push_back(Tensor::empty({b.numel}, DType::F32, comm_.device()));
  expected_.assign(params_.size(), 0);
  count_.assign(params_.size(), 0);
  ready_.assign(layout_.buckets.size(), 0);
  for (size_t k = 0; k < params_.size(); ++k) params_[k].var.set_grad_hook([this, k] { on_grad(k); });
}

GradReducer::~GradReducer() {
  for (const nn::ParamRef& p : params_) p.var.set_grad_hook(nullptr);
}

float* GradReducer::grad_data(size_t param) const {
  const Var& v = params_[param].var;
  MDQ_CHECK(v.has_grad(), "data-parallel training: parameter " << params_[param].name
                                                              << " got no gradient in this step; every rank must use "
                                                                 "every parameter in every step");
  return v.grad().data<float>();
}

void GradReducer::on_grad(size_t param) {
  const int64_t c = ++count_[param];
  if (!calibrated_) return;
  MDQ_CHECK(c <= expected_[param], "data-parallel training: parameter " << params_[param].name << " received " << c
                                                                       << " gradient contributions in one step, "
                                                                       << expected_[param]
                                                                       << " in the first: the network's graph must "
                                                                          "not change between steps");
  if (c == expected_[param] && ++ready_[layout_.bucket_of[param]] == layout_.buckets[layout_.bucket_of[param]].entries.size())
    start_ready();
}

void GradReducer::start_ready() {
  while (next_ < layout_.buckets.size() && ready_[next_] == layout_.buckets[next_].entries.size()) start(next_++);
}

// Grads move into a bucket with one copy_spans: their addresses change every step (a grad is the
// tensor backward produced), so the spans are listed anew each time.
void GradReducer::start(size_t bucket) {
  spans_.clear();
  float* flat = flat_[bucket].data<float>();
  for (const BucketLayout::Entry& e : layout_.buckets[bucket].entries)
    spans_.push_back(ops::CopySpan{flat + e.offset, grad_data(e.param), static_cast<size_t>(e.numel) * sizeof(float)});
  ops::copy_spans(comm_.device(), spans_);
  comm_.start_mean(flat, layout_.buckets[bucket].numel);
}

void GradReducer::finish() {
  for (size_t k = 0; k < params_.size(); ++k) {
    MDQ_CHECK(count_[k] > 0, "data-parallel training: parameter " << params_[k].name
                                                                 << " got no gradient in this step; every rank must "
                                                                    "use every parameter in every step");
    MDQ_CHECK(!calibrated_ || count_[k] == expected_[k],
              "data-parallel training: parameter " << params_[k].name << " received " << count_[k]
                                                   << " gradient contributions, " << expected_[k]
                                                   << " in the first step: the network's graph must not change");
  }
  if (!calibrated_) {
    expected_ = count_;
    calibrated_ = true;
  }
  started_during_backward_ = static_cast<int64_t>(next_);
  while (next_ < layout_.buckets.size()) start(next_++);
  comm_.finish_means();
  // The means stay where they were reduced: each grad becomes its window of the bucket (no copy
  // back; the bucket is not written again before the next step's backward has replaced them).
  for (size_t b = 0; b < layout_.buckets.size(); ++b)
    for (const BucketLayout::Entry& e : layout_.buckets[b].entries) {
      const Var& v = params_[e.param].var;
      v.replace_grad(flat_[b].window(e.offset, v.value().shape()));
    }
  std::fill(count_.begin(), count_.end(), 0);
  std::fill(ready_.begin(), ready_.end(), 0);
  next_ = 0;
}

}  // namespace mdq::dist

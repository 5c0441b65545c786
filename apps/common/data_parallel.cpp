#include "apps/common/data_parallel.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <vector>

#include "engine/device.h"
#include "engine/dist/join.h"
#include "engine/dist/local_launcher.h"
#include "engine/dist/mpi.h"
#include "engine/dist/nccl.h"
#include "engine/ops/elementwise.h"

namespace mdq::app {
namespace {

void broadcast_tensor(dist::Communicator& c, Tensor& t) {
  if (t.defined() && t.numel() > 0) c.broadcast(t.raw(), static_cast<int64_t>(t.nbytes()), 0);
}

}  // namespace

DataParallel::DataParallel(const TrainOptions& o, Device device) : o_(o) {
  comm_ = dist::join_ranks(device, o.dist_timeout);
  if (!comm_) return;
  MDQ_CHECK(o.batch_size % comm_->size() == 0, "--batch-size " << o.batch_size << " is the global batch and must be "
                                                               << "divisible by the number of ranks (" << comm_->size()
                                                               << "): each rank takes batch/N images of it");
  if (!is_root()) {  // one voice: rank 0 prints (errors still reach stderr from every rank)
    std::fflush(stdout);
    saved_stdout_ = dup(STDOUT_FILENO);
    const int null_fd = open("/dev/null", O_WRONLY);
    if (null_fd >= 0) {
      dup2(null_fd, STDOUT_FILENO);
      close(null_fd);
    }
  }
}

DataParallel::~DataParallel() {
  sync_bn_.reset();
  reducer_.reset();
  if (saved_stdout_ >= 0) {
    std::fflush(stdout);
    dup2(saved_stdout_, STDOUT_FILENO);
    close(saved_stdout_);
  }
}

void DataParallel::shard(data::DataLoader& loader) const { loader.set_shard(rank(), size()); }

void DataParallel::attach(nn::Module& model, quant::Quantizer& quantizer, LoopState& state) {
  if (!comm_) return;
  dist::Communicator& c = *comm_;
  // Rank 0's state everywhere: the ranks start equal (same seed) unless rank 0 resumed.
  for (const nn::ParamRef& p : model.parameters()) {
    Var v = p.var;
    broadcast_tensor(c, v.value());
  }
  for (auto& [name, t] : model.buffers()) broadcast_tensor(c, *t);
  for (auto& [name, t] : quantizer.state()) broadcast_tensor(c, *t);
  std::string meta = quantizer.state_metadata();
  dist::broadcast_string(c, meta, 0);
  if (!is_root()) quantizer.load_state_metadata(meta);  // counters, β; primal from the stored variables
  double loop[3] = {static_cast<double>(state.iteration), state.best_val, static_cast<double>(state.best_iter)};
  c.broadcast_host(loop, sizeof loop, 0);
  state.iteration = static_cast<int64_t>(loop[0]);
  state.best_val = loop[1];
  state.best_iter = static_cast<int64_t>(loop[2]);

  reducer_ = std::make_unique<dist::GradReducer>(model.parameters(), c);
  if (o_.sync_bn) sync_bn_ = std::make_unique<dist::SyncBatchNormScope>(c);
  const dist::BucketLayout& layout = reducer_->layout();
  std::printf("data-parallel: %d ranks (%s), batch %lld = %d x %lld, %zu gradient bucket(s), BatchNorm statistics %s\n",
              c.size(), c.describe().c_str(), static_cast<long long>(o_.batch_size), c.size(),
              static_cast<long long>(o_.batch_size / c.size()), layout.buckets.size(),
              o_.sync_bn ? "over all ranks (--sync-bn)" : "per rank");
}

void DataParallel::reduce_gradients() {
  if (reducer_) reducer_->finish();
}

void DataParallel::watch_replay() {
  if (comm_) comm_->watch_replay("a replayed training step (its gradient all-reduces)");
}

void DataParallel::reduce(EvalResult& r) {
  if (!comm_) return;
  std::vector<double> v = {static_cast<double>(r.count), static_cast<double>(r.top1), static_cast<double>(r.top5),
                           r.loss_sum, static_cast<double>(r.nonfinite)};
  for (int64_t x : r.class_count) v.push_back(static_cast<double>(x));
  for (int64_t x : r.class_correct) v.push_back(static_cast<double>(x));
  comm_->all_reduce_sum_host(v.data(), static_cast<int64_t>(v.size()));
  r.count = static_cast<int64_t>(v[0]);
  r.top1 = static_cast<int64_t>(v[1]);
  r.top5 = static_cast<int64_t>(v[2]);
  r.loss_sum = v[3];
  r.nonfinite = static_cast<int64_t>(v[4]);
  const size_t k = r.class_count.size();
  for (size_t i = 0; i < k; ++i) {
    r.class_count[i] = static_cast<int64_t>(v[5 + i]);
    r.class_correct[i] = static_cast<int64_t>(v[5 + k + i]);
  }
}

void DataParallel::reduce_train_stats(double& loss_sum, int64_t& correct, int64_t& seen) {
  if (!comm_) return;
  double v[3] = {loss_sum, static_cast<double>(correct), static_cast<double>(seen)};
  comm_->all_reduce_sum_host(v, 3);
  loss_sum = v[0];
  correct = static_cast<int64_t>(v[1]);
  seen = static_cast<int64_t>(v[2]);
}

void DataParallel::sync_buffers(nn::Module& model) {
  if (!comm_ || o_.sync_bn) return;  // sync BN keeps them equal already
  for (auto& [name, t] : model.buffers()) {
    if (t->dtype() != DType::F32 || t->numel() == 0) continue;
    comm_->all_reduce_sum(t->data<float>(), t->numel());
    t->copy_from(ops::scale(*t, 1.f / static_cast<float>(comm_->size())));
  }
}

void DataParallel::broadcast_weights(nn::Module& model) {
  if (!comm_) return;
  for (const nn::ParamRef& p : model.parameters()) {
    Var v = p.var;
    broadcast_tensor(*comm_, v.value());
  }
  for (auto& [name, t] : model.buffers()) broadcast_tensor(*comm_, *t);
}

bool DataParallel::any_rank(bool flag) {
  // One rank has nothing to agree on: no host round trip through NCCL every 10th step.
  if (!comm_ || comm_->size() == 1) return flag;
  double v = flag ? 1 : 0;
  comm_->all_reduce_sum_host(&v, 1);
  return v > 0;
}

int run_train_ranks(const TrainOptions& o, const std::function<int(const TrainOptions&)>& train) {
  auto guarded = [&](const char* who) {
    try {
      return train(o);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: error: %s\n", who, e.what());
      std::fflush(stderr);
      dist::mpi_abort_if_running(2);  // under mpirun: the other ranks may wait in a collective
      return 2;
    }
  };
  if (o.gpus == 0) return guarded("mdq-train");
  MDQ_CHECK(!dist::started_by_mpi_launcher(), "--gpus N starts N ranks itself; under mpirun, leave --gpus out "
                                              "(mpirun -np N starts the ranks)");
  MDQ_CHECK(o.device != "cpu", "--gpus trains on GPUs; for CPU ranks use mpirun -np N mdq-train --device cpu");
  if (!dist::nccl_built()) dist::make_nccl_communicator({});  // throws: built without NCCL, and what to do
  return dist::run_local_ranks(o.gpus, [&](int rank) {
    const std::string who = "mdq-train rank " + std::to_string(rank);
    return guarded(who.c_str());
  });
}

}  // namespace mdq::app

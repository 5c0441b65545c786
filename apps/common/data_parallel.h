// Data-parallel training for mdq-train: which rank this process is, its communicator, and the few
// calls the training loop (trainer.cpp) makes. Alone (no --gpus, not under mpirun) every call is
// a no-op and nothing is installed.
//
// Same result as one process: --batch-size is the global batch; each of the N ranks takes its
// batch/N slice of the batch one process would take (the loaders are sharded), gradients are
// averaged over ranks (engine/dist/grad_reducer.h), so the MD update and the β/lr schedules see
// the same global step. BatchNorm normalises per rank unless --sync-bn (engine/dist/
// sync_batchnorm.h); per-rank running statistics are averaged before every evaluation and
// checkpoint. Evaluation is sharded and its counts summed; only rank 0 prints, writes metrics
// and checkpoints; rank 0's state reaches every rank at the start, so --resume works with any N.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "apps/common/evaluate.h"
#include "apps/common/options.h"
#include "apps/common/run_state.h"
#include "data/loader.h"
#include "engine/dist/communicator.h"
#include "engine/dist/grad_reducer.h"
#include "engine/dist/sync_batchnorm.h"

namespace mdq::app {

class DataParallel {
 public:
  // Joins the ranks when there are any: a rank forked by --gpus N (NCCL, unique id over a pipe) or
  // started by mpirun (NCCL for CUDA, MPI on host memory for the CPU). A CUDA rank binds its GPU
  // here, before any other CUDA work. Other ranks than 0 print nothing on stdout.
  DataParallel(const TrainOptions& o, Device device);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  bool active() const { return comm_ != nullptr; }
  int rank() const { return comm_ ? comm_->rank() : 0; }
  int size() const { return comm_ ? comm_->size() : 1; }
  bool is_root() const { return rank() == 0; }
  dist::Communicator* communicator() { return comm_.get(); }

  // This rank's slice of every global batch.
  void shard(data::DataLoader& loader) const;
  // Once the model, the quantizer and the loop state exist (and rank 0 has read --resume's
  // checkpoint): every rank takes rank 0's parameters, buffers, quantizer state and loop position,
  // then the gradient buckets and (--sync-bn) sync BN are installed.
  void attach(nn::Module& model, quant::Quantizer& quantizer, LoopState& state);
  // After backward(): every gradient becomes the mean over ranks.
  void reduce_gradients();
  // After each replay of a training step captured as a CUDA graph: the transport's watchdog
  // watches the replay (its collectives were captured).
  void watch_replay();
  // Sums over ranks: evaluation counts, and the training loss/accuracy tallies of a metrics line.
  void reduce(EvalResult& r);
  void reduce_train_stats(double& loss_sum, int64_t& correct, int64_t& seen);
  // Per-rank BN: every rank's running statistics become their mean (running_mean then equals the
  // single-process running mean of the global batches). Before evaluations and checkpoints.
  void sync_buffers(nn::Module& model);
  // Rank 0's parameters and buffers to every rank (after rank 0 alone read a checkpoint).
  void broadcast_weights(nn::Module& model);
  // True on every rank when `flag` is true on any (a stop request must stop all ranks at the same
  // step, or the others wait in the next collective).
  bool any_rank(bool flag);

 private:
  const TrainOptions& o_;
  std::unique_ptr<dist::Communicator> comm_;
  std::unique_ptr<dist::GradReducer> reducer_;
  std::unique_ptr<dist::SyncBatchNormScope> sync_bn_;
  int saved_stdout_ = -1;
};

// mdq-train's entry: with --gpus N forks N local ranks, each running train(o), and waits for them;
// otherwise runs train(o) here (alone, or as one rank of mpirun). Returns train's exit code (with
// --gpus, the first non-zero one of the ranks). An error
// on one rank stops all of them with its message (MPI_Abort under mpirun; the --gpus launcher
// stops the others), so no rank is left waiting in a collective.
int run_train_ranks(const TrainOptions& o, const std::function<int(const TrainOptions&)>& train);

}  // namespace mdq::app

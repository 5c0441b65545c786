#include "apps/common/trainer.h"

#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>

#include "apps/common/builders.h"
#include "apps/common/cli.h"
#include "apps/common/data_parallel.h"
#include "apps/common/evaluate.h"
#include "apps/common/progress.h"
#include "apps/common/run_folder.h"
#include "apps/common/run_state.h"
#include "apps/common/stop_signal.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "engine/device.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/loss.h"
#include "engine/optim/schedule.h"
#include "engine/precision.h"
#include "engine/quant/quantizer.h"
#include "engine/train_step.h"

namespace mdq::app {
namespace {

// Every parameter and buffer finite? One device sum per tensor, read once: run before each save.
bool model_is_finite(nn::Module& model) {
  std::vector<Tensor> sums;
  for (const nn::ParamRef& p : model.parameters()) sums.push_back(ops::sum_all(p.var.value()));
  for (auto& [name, t] : model.buffers())
    if (t->dtype() == DType::F32) sums.push_back(ops::sum_all(*t));
  if (sums.empty()) return true;
  Tensor total = sums.front();
  for (size_t i = 1; i < sums.size(); ++i) total = ops::add(total, sums[i]);
  return std::isfinite(total.item());
}

// What --precision auto means (#12): the fastest precision for the model on the GPU that keeps
// the accuracy of the slower ones; fp32 on the CPU, whose kernels compute in fp32 at every
// precision. bf16 for ResNet-18 and VGG-16 (1.3-2.7x tf32's step; CIFAR-10 ResNet-18, 30
// epochs: MD-tanh-S 84.66%, float 87.93%). tf32 for MobileNetV2: its bf16 step is 1.4x / 2.6x
// tf32's at batch 128 / 512 (benchmarks/results/2026-12-02-h200-train-step-after-conversions.txt),
// but its 30-epoch runs test 0.7 (float) and 2.1 (MD-tanh-S) points lower at bf16
// (results/mobilenetv2.md).
std::string auto_precision(const std::string& model, Device device) {
  if (device != Device::CUDA) return "fp32";
  return model == "mobilenetv2" ? "tf32" : "bf16";
}

}  // namespace

int exit_code(const TrainResult& r) {
  return r.end == TrainResult::End::Diverged ? kExitDiverged : r.end == TrainResult::End::Interrupted ? kExitInterrupted : 0;
}

TrainResult train(const TrainOptions& o) {
  validate_train_options(o);
  const Device device = pick_device(o.device);
  DataParallel dp(o, device);  // data-parallel: joins the ranks, binds this rank's GPU (no-op alone)
  set_precision(parse_precision(o.precision != "auto" ? o.precision : auto_precision(o.model, device)));
  check_run_folder(o);
  ops::set_deferred_label_checks(true);  // no stall per step; checked at every log line
  std::printf("mdq-train: %s on %s, method %s (%d levels), device %s%s, precision %s\n", o.model.c_str(),
              o.dataset.c_str(), o.method.c_str(), o.levels, device_name(device),
              device == Device::CUDA ? (" (" + cuda_device_name() + ")").c_str() : "", precision_name(precision()));

  // ---- data
  data::Splits splits = data::load_dataset(o.dataset, o.data_dir, o.seed, o.val_fraction);
  const data::DatasetInfo info = splits.train->info();
  if (dp.is_root()) prepare_run_folder(o);  // data-parallel: rank 0 alone writes the run folder
  if (!splits.balance_report.empty()) std::printf("%s", splits.balance_report.c_str());
  data::DataLoader train_loader(splits.train, o.batch_size, /*shuffle=*/true, /*drop_last=*/true,
                                data::train_augment_for(o.dataset), o.seed, device, o.workers);
  dp.shard(train_loader);  // data-parallel: this rank's slice of each global batch
  auto eval_loader_for = [&](std::shared_ptr<data::Dataset> ds) {
    // About 2^20 pixels a batch (1024 CIFAR images): a validation pass is a few forwards whose
    // launches the host queues while the GPU runs the one before (evaluate.cpp reads nothing back
    // until the end), where batches of 256 left an H200 waiting for the host.
    const int64_t eval_batch = std::max<int64_t>(o.batch_size, (int64_t{1} << 20) / (int64_t{info.height} * info.width));
    auto loader = std::make_unique<data::DataLoader>(ds, eval_batch, false, false,
                                                     data::eval_augment_for(o.dataset), o.seed, device, o.workers);
    dp.shard(*loader);
    return loader;
  };
  auto val_loader = eval_loader_for(splits.val ? splits.val : splits.test);
  auto test_loader = eval_loader_for(splits.test);
  const char* val_name = splits.val ? "val" : "test";
  const int64_t per_epoch = train_loader.batches_per_epoch();
  MDQ_CHECK(per_epoch > 0, "the training split has fewer images (" << splits.train->size() << ") than one batch ("
                                                                   << o.batch_size << ")");
  const int64_t total = o.iters > 0 ? o.iters : static_cast<int64_t>(std::ceil(o.epochs * per_epoch));
  MDQ_CHECK(total > 0, "nothing to do: give --iters or --epochs");
  const int64_t eval_every = o.eval_every > 0 ? o.eval_every : per_epoch;
  // Without --ckpt-every, last.ckpt is written at the validations at least kCkptSeconds apart (and
  // at the end, and on a stop signal): at every validation, a 100k-iteration CIFAR run on an H200
  // wrote 285 checkpoints of 180 MB, 23 s of its 350.
  constexpr double kCkptSeconds = 60;
  const int64_t ckpt_every = o.ckpt_every > 0 ? o.ckpt_every : eval_every;
  const optim::MultiStepLr schedule(o.lr, o.lr_step, o.lr_gamma);  // lr × γ at each --lr-step

  // ---- model and quantizer
  auto model = build_model(o, info);
  std::printf("model %s: %.3fM parameters, input %dx%dx%d, %d classes\n", o.model.c_str(),
              model->parameter_count() / 1e6, info.channels, info.height, info.width, info.num_classes);
  model->to(device);
  model->train();
  std::unique_ptr<quant::Quantizer> quantizer_owner = build_quantizer(o, *model);
  quant::Quantizer& quantizer = *quantizer_owner;

  const std::string last_ckpt = o.out + "/last.ckpt", best_ckpt = o.out + "/best.ckpt";
  LoopState state;
  if (o.resume && dp.is_root()) {  // data-parallel: rank 0 reads, attach() below hands its state to all
    state = load_run(last_ckpt, o, *model, quantizer);
    trim_metrics(o.out + "/metrics.jsonl", state.iteration);
    std::printf("resumed from %s at iteration %lld\n", last_ckpt.c_str(), static_cast<long long>(state.iteration));
  }
  dp.attach(*model, quantizer, state);  // data-parallel: rank 0's state everywhere, gradient buckets, sync BN
  std::ofstream metrics;  // data-parallel: rank 0 alone writes the run folder (unopened elsewhere)
  if (dp.is_root()) {
    std::ofstream cfg(o.out + "/config.txt");
    cfg << to_config_text(o);
    metrics.open(o.out + "/metrics.jsonl", o.resume ? std::ios::app : std::ios::trunc);
  }

  // ---- loop
  int64_t epoch = state.iteration / per_epoch;
  train_loader.start_epoch(epoch);
  for (int64_t skip = state.iteration % per_epoch; skip > 0; --skip) {  // same data order as an unbroken run
    data::Batch b;
    train_loader.next(b);
  }
  Progress progress(total, state.iteration, o.quiet || !dp.is_root());
  TrainResult result;
  StopSignal stop_signal;
  int64_t saved_at = o.resume ? state.iteration : 0;  // the iteration last.ckpt holds (0: none yet)
  // Weights and BN statistics finite? Asked before each save; a checkpoint and an evaluation at
  // the same iteration share one answer (it costs a device sum and, with ranks, an all-reduce).
  int64_t finite_at = -1;
  auto weights_finite = [&](int64_t iteration) {
    if (finite_at != iteration) {
      if (dp.any_rank(!model_is_finite(*model))) return false;
      finite_at = iteration;
    }
    return true;
  };
  // A run that diverges stops at once and writes nothing more: last.ckpt and best.ckpt stay the
  // last good ones. It says where it was seen (the loss is read every 10th step).
  auto diverged = [&](int64_t iteration, const std::string& what) {
    progress.finish();
    if (dp.is_root())
      std::fprintf(stderr,
                 "mdq-train: training diverged: %s at iteration %lld. Nothing was saved after it: %s/last.ckpt "
                 "(iteration %lld) and best.ckpt (iteration %lld) are the last good ones. Try a lower --lr.\n",
                 what.c_str(), static_cast<long long>(iteration), o.out.c_str(),
                 static_cast<long long>(saved_at),
                 static_cast<long long>(state.best_iter));
    metrics << "{\"diverged_at\": " << iteration << "}\n";  // a no-op on ranks other than 0 (unopened)
    result.end = TrainResult::End::Diverged;
    result.stopped_at = iteration;
    result.best_val_top1 = state.best_val;
    return result;
  };

  double loss_sum = 0;
  int64_t correct = 0, seen = 0, images_total = 0;
  // Throughput counts training steps only: the time spent in evaluations and checkpoints (each
  // begins by waiting for the steps already queued, so those stay counted) is left out.
  using Clock = std::chrono::steady_clock;
  auto t_start = Clock::now();
  auto t_window = t_start;
  double window_images = 0, rate = 0, paused_s = 0, window_paused_s = 0;
  Clock::time_point pause_began;
  double eval_s = 0, ckpt_s = 0;  // of the paused time: validations, and checkpoint saves
  // The steady rate also leaves out this session's first steps: cuDNN's algorithm search, the
  // CUDA graph's capture and the loader's first batches. It is what a longer run would see.
  constexpr int64_t kSteadyAfter = 5;
  const int64_t first_iteration = state.iteration;
  Clock::time_point t_steady;
  double paused_at_steady = 0;
  int64_t images_at_steady = -1;
  // Checkpoints are written in the background: the loop pays for the host snapshot only.
  CheckpointWriter writer;
  auto seconds_since = [](Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  Clock::time_point saved_time = t_start;  // when last.ckpt was last written (or the loop began)
  auto pause = [&] {
    cuda_synchronize();
    pause_began = Clock::now();
  };
  auto resume = [&] {
    const double s = seconds_since(pause_began);
    paused_s += s;
    window_paused_s += s;
  };
  TrainStepOptions step_options;
  step_options.cuda_graph = o.cuda_graph;
  if (dp.active()) {
    step_options.after_backward = [&] { dp.reduce_gradients(); };  // mean over ranks
    step_options.after_replay = [&] { dp.watch_replay(); };
  }
  TrainStep step(*model, quantizer, step_options);
  if (device == Device::CUDA && dp.is_root())
    std::printf("training step: %s\n",
                step.eager_reason().empty()
                    ? ("replayed from a CUDA graph after " + std::to_string(step_options.warmup) + " eager steps").c_str()
                    : ("eager (" + step.eager_reason() + ")").c_str());
  data::Batch batch;
  for (int64_t it = state.iteration; it < total; ++it) {
    if (!train_loader.next(batch)) {
      train_loader.start_epoch(++epoch);
      MDQ_CHECK(train_loader.next(batch), "data loader produced an empty epoch");
    }
    const float lr = schedule.lr(it);
    step.run(batch.images, batch.labels, lr);

    const int64_t n = batch.labels.numel();
    images_total += n * dp.size();  // data-parallel: every rank took n
    window_images += static_cast<double>(n * dp.size());
    if (it + 1 - first_iteration == kSteadyAfter && it + 1 < total) {
      cuda_synchronize();  // once: the clock starts when these steps are done, not queued
      t_steady = Clock::now();
      paused_at_steady = paused_s;
      images_at_steady = images_total;
    }
    const bool log_now = (it + 1) % o.log_every == 0 || it + 1 == total;
    // Reading the loss waits for the GPU: sample every 10th step, and every step that is logged.
    if (log_now || it % 10 == 0) {
      ops::check_pending_label_errors();
      const float sampled = step.loss().item();
      if (dp.any_rank(!std::isfinite(sampled))) return diverged(it + 1, "the training loss is " + std::to_string(sampled));
      loss_sum += static_cast<double>(sampled) * n;
      correct += ops::count_topk_correct(step.logits(), step.labels(), 1);
      seen += n;
    }
    auto now = Clock::now();
    double dt = std::chrono::duration<double>(now - t_window).count() - window_paused_s;
    if (dt > 2.0) {
      rate = window_images / dt;
      window_images = 0;
      window_paused_s = 0;
      t_window = now;
    }
    char status[160];
    std::snprintf(status, sizeof status, "loss %.4f | lr %.2g | beta %.3g", loss_sum / std::max<int64_t>(seen, 1), lr,
                  quantizer.beta());
    progress.update(it + 1, status, rate);
    if (log_now) {
      dp.reduce_train_stats(loss_sum, correct, seen);  // data-parallel: over all ranks' images
      metrics << "{\"iter\": " << it + 1 << ", \"loss\": " << loss_sum / std::max<int64_t>(seen, 1)
              << ", \"train_acc\": " << 100.0 * correct / std::max<int64_t>(seen, 1) << ", \"lr\": " << lr
              << ", \"beta\": " << quantizer.beta() << ", \"img_per_s\": " << rate << "}\n";
      metrics.flush();
      loss_sum = 0;
      correct = seen = 0;
    }

    const bool last = it + 1 == total;
    // A stop request must stop every rank at the same step: with several, it is agreed on at the
    // steps that read the loss anyway (at most 10 steps later).
    int sig = StopSignal::requested();
    if (dp.size() > 1) sig = (log_now || it % 10 == 0) && dp.any_rank(sig != 0) ? (sig ? sig : SIGTERM) : 0;
    const bool eval_now = (it + 1) % eval_every == 0 || last;
    // With ranks, the clock may say yes on one and no on another. That is harmless: a timed save
    // falls on a validation, which every rank runs and whose finiteness answer the save reuses,
    // so the save itself asks nothing of the other ranks; rank 0 alone writes.
    const bool ckpt_due = (it + 1) % ckpt_every == 0 && (o.ckpt_every > 0 || seconds_since(saved_time) >= kCkptSeconds);
    const bool ckpt_now = ckpt_due || last || sig;
    if (eval_now || ckpt_now) {
      dp.sync_buffers(*model);  // data-parallel: per-rank BN statistics averaged before anything reads or saves them
      pause();
    }
    if (eval_now) {
      const auto eval_began = Clock::now();
      quantizer.apply_rounded();
      EvalResult rounded = evaluate(*model, *val_loader, info.num_classes, o.max_eval_batches);
      quantizer.restore_primal();
      EvalResult projected = evaluate(*model, *val_loader, info.num_classes, o.max_eval_batches);
      dp.reduce(rounded);  // data-parallel: each rank evaluated its slice
      dp.reduce(projected);
      if (dp.any_rank(rounded.nonfinite > 0 || projected.nonfinite > 0))
        return diverged(it + 1, std::to_string(std::max(rounded.nonfinite, projected.nonfinite)) + " of " +
                                    std::to_string(rounded.count) + " validation images have NaN/Inf logits");
      if (!weights_finite(it + 1)) return diverged(it + 1, "a weight or BatchNorm statistic is NaN/Inf");
      state.iteration = it + 1;
      eval_s += seconds_since(eval_began);
      if (rounded.top1_pct() > state.best_val) {
        state.best_val = rounded.top1_pct();
        state.best_iter = it + 1;
        const auto save_began = Clock::now();
        if (dp.is_root()) save_rounded(writer, best_ckpt, o, *model, quantizer, state);
        ckpt_s += seconds_since(save_began);
      }
      metrics << "{\"iter\": " << it + 1 << ", \"" << val_name << "_acc_rounded\": " << rounded.top1_pct() << ", \""
              << val_name << "_acc_projected\": " << projected.top1_pct() << ", \"" << val_name
              << "_loss_rounded\": " << rounded.mean_loss() << ", \"beta\": " << quantizer.beta() << "}\n";
      metrics.flush();
      if (!o.quiet && dp.is_root())
        std::fprintf(stderr, "\niter %lld: %s top-1 rounded %.2f%%, projected %.2f%% (best %.2f%% at %lld)\n",
                     static_cast<long long>(it + 1), val_name, rounded.top1_pct(), projected.top1_pct(),
                     state.best_val, static_cast<long long>(state.best_iter));
    }
    if (ckpt_now) {
      if (!weights_finite(it + 1)) return diverged(it + 1, "a weight or BatchNorm statistic is NaN/Inf");
      state.iteration = it + 1;
      const auto save_began = Clock::now();
      if (dp.is_root()) save_run(writer, last_ckpt, o, *model, quantizer, state);
      ckpt_s += seconds_since(save_began);
      saved_at = it + 1;
      saved_time = Clock::now();
    }
    if (eval_now || ckpt_now) resume();
    if (sig) {
      writer.wait();  // last.ckpt is on disk before we say so
      progress.finish();
      if (dp.is_root())
        std::fprintf(stderr,
                   "mdq-train: stopped by %s at iteration %lld of %lld; saved %s. Continue with:\n"
                   "  mdq-train --resume --out %s\n",
                   StopSignal::name(sig), static_cast<long long>(it + 1), static_cast<long long>(total),
                   last_ckpt.c_str(), o.out.c_str());
      result.end = TrainResult::End::Interrupted;
      result.stopped_at = it + 1;
      result.best_val_top1 = state.best_val;
      return result;
    }
  }
  progress.finish();
  cuda_synchronize();
  const double loop_s = seconds_since(t_start), seconds = loop_s - paused_s;

  // ---- final test of the best rounded network
  result.best_val_top1 = state.best_val;
  result.train_images_per_s = seconds > 0 ? images_total / seconds : 0;
  if (images_at_steady >= 0) {
    const double steady_s = seconds_since(t_steady) - (paused_s - paused_at_steady);
    result.steady_images_per_s = steady_s > 0 ? (images_total - images_at_steady) / steady_s : 0;
  }
  writer.wait();
  if (dp.is_root()) load_weights(best_ckpt, *model);
  dp.broadcast_weights(*model);  // data-parallel: the best network everywhere, then a sharded test
  EvalResult test = evaluate(*model, *test_loader, info.num_classes);
  dp.reduce(test);
  result.test_top1 = test.top1_pct();
  result.test_top5 = test.top5_pct();
  std::printf("best rounded network (iteration %lld, %s top-1 %.2f%%)\n", static_cast<long long>(state.best_iter),
              val_name, state.best_val);
  std::printf("training throughput: %.0f images/s over %.1f s of training steps\n", result.train_images_per_s, seconds);
  if (images_at_steady >= 0)
    std::printf("steady: %.0f images/s after the first %lld steps\n", result.steady_images_per_s,
                static_cast<long long>(kSteadyAfter));
  std::printf("time: %.1f s in the loop: %.1f s training steps, %.1f s validation, %.1f s checkpoints, %.1f s other\n",
              loop_s, seconds, eval_s, ckpt_s, paused_s - eval_s - ckpt_s);
  std::printf("TEST top-1 %.2f%%  top-5 %.2f%%  (rounded %s network, %lld test images)\n", result.test_top1,
              result.test_top5, o.method.c_str(), static_cast<long long>(test.count));
  metrics << "{\"test_top1\": " << result.test_top1 << ", \"test_top5\": " << result.test_top5
          << ", \"best_iter\": " << state.best_iter << ", \"train_img_per_s\": " << result.train_images_per_s
          << ", \"steady_img_per_s\": " << result.steady_images_per_s
          << ", \"train_s\": " << seconds << ", \"eval_s\": " << eval_s << ", \"ckpt_s\": " << ckpt_s << "}\n";
  return result;
}

}  // namespace mdq::app

// The pieces of data-parallel training that need no second process or GPU: the gradient bucket
// layout, the reducer's hooks and ordering (with a recording communicator), the loader's shards,
// sync BN on one rank, the --gpus launcher's fault handling and the watchdog.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>
#include <thread>

#include "data/loader.h"
#include "engine/dist/grad_reducer.h"
#include "engine/dist/local_launcher.h"
#include "engine/dist/sync_batchnorm.h"
#include "engine/dist/watchdog.h"
#include "engine/nn/batchnorm.h"
#include "engine/nn/functional.h"
#include "engine/nn/linear.h"
#include "tests/cpu/test_data_support.h"
#include "tests/support/testing.h"

using namespace mdq;

namespace {

// A one-rank communicator that records what the reducer asks of it.
class Recorder : public dist::Communicator {
 public:
  std::vector<std::pair<const float*, int64_t>> means;  // start_mean calls, in order
  int finishes = 0;
  int rank() const override { return 0; }
  int size() const override { return 1; }
  Device device() const override { return Device::CPU; }
  std::string describe() const override { return "recorder"; }
  void all_reduce_sum(float*, int64_t) override {}
  void all_reduce_sum(double*, int64_t) override {}
  void broadcast(void*, int64_t, int) override {}
  void start_mean(float* data, int64_t n) override { means.emplace_back(data, n); }
  void finish_means() override { ++finishes; }
  void all_reduce_sum_host(double*, int64_t) override {}
  void broadcast_host(void*, int64_t, int) override {}
  void barrier() override {}
  [[noreturn]] void abort(const std::string& why) override { FAIL(why); std::abort(); }
};

}  // namespace

TEST_CASE("bucket layout: every parameter in exactly one bucket, reverse order, caps kept, stable") {
  const std::vector<int64_t> numels = {100, 3000, 50, 200000, 10, 700, 700, 64};
  const size_t cap = 16 << 10, first_cap = 4 << 10;
  const dist::BucketLayout a = dist::make_bucket_layout(numels, cap, first_cap);
  std::vector<int> seen(numels.size(), 0);
  size_t previous = numels.size();
  for (size_t b = 0; b < a.buckets.size(); ++b) {
    int64_t offset = 0;
    for (const auto& e : a.buckets[b].entries) {
      ++seen[e.param];
      REQUIRE(e.param < previous);  // reverse parameter order throughout
      previous = e.param;
      REQUIRE(e.offset == offset);
      REQUIRE(e.numel == numels[e.param]);
      REQUIRE(a.bucket_of[e.param] == b);
      offset += e.numel;
    }
    REQUIRE(a.buckets[b].numel == offset);
    const size_t bytes = static_cast<size_t>(offset) * 4;
    // Over its cap only when one parameter alone is larger.
    REQUIRE((bytes <= (b == 0 ? first_cap : cap) || a.buckets[b].entries.size() == 1));
  }
  for (int s : seen) REQUIRE(s == 1);
  REQUIRE(a.buckets.front().entries.front().param == numels.size() - 1);  // the last layer's first
  REQUIRE(a.buckets.size() == 4);  // [64, 700, 700] [10] [200000] [50, 3000, 100]
  REQUIRE(a.bucket_of[3] == 2);
  REQUIRE(a.buckets[2].entries.size() == 1);
  const dist::BucketLayout b = dist::make_bucket_layout(numels, cap, first_cap);
  REQUIRE(b.bucket_of == a.bucket_of);
  REQUIRE_THROWS_WITH(dist::make_bucket_layout({4, 0}, cap, first_cap), Catch::Contains("parameter 1 has 0 elements"));
}

TEST_CASE("the reducer starts buckets in layout order during backward (from the second step) and refuses a changed graph") {
  Var w1(testing::random_tensor({8, 6}, 1), true), w2(testing::random_tensor({4, 8}, 2), true);
  Var w3(testing::random_tensor({3, 4}, 3), true);
  std::vector<nn::ParamRef> params = {{"w1", w1, nn::ParamKind::Weight, 6, 8},
                                      {"w2", w2, nn::ParamKind::Weight, 8, 4},
                                      {"w3", w3, nn::ParamKind::Weight, 4, 3}};
  Recorder comm;
  dist::BucketCaps caps;
  caps.cap_bytes = caps.first_cap_bytes = 4 * 40;  // one parameter per bucket
  auto reducer_owner = std::make_unique<dist::GradReducer>(params, comm, caps);
  dist::GradReducer& reducer = *reducer_owner;
  REQUIRE(reducer.layout().buckets.size() == 3);
  const Tensor x = testing::random_tensor({5, 6}, 4);
  auto loss = [&] { return nn::sum(nn::linear(nn::linear(nn::linear(Var(x), w1, Var()), w2, Var()), w3, Var())); };
  for (int step = 0; step < 3; ++step) {
    comm.means.clear();
    Var l = loss();
    backward(l);
    const std::vector<Tensor> grads = {w1.grad().clone(), w2.grad().clone(), w3.grad().clone()};
    REQUIRE(comm.means.size() == (step == 0 ? 0u : 3u));  // started inside backward after step 1
    reducer.finish();
    REQUIRE(comm.means.size() == 3);
    REQUIRE(comm.means[0].second == 12);  // w3 first: its gradient is complete first
    REQUIRE(comm.means[1].second == 32);
    REQUIRE(comm.means[2].second == 48);
    REQUIRE(reducer.started_during_backward() == (step == 0 ? 0 : 3));
    REQUIRE(w1.grad().to_vector() == grads[0].to_vector());  // one rank: the mean is the grad
    REQUIRE(w3.grad().to_vector() == grads[2].to_vector());
    for (auto& p : params) p.var.zero_grad();
  }
  // w3 used twice: more contributions than the first step had.
  Var twice = nn::add(nn::sum(nn::linear(nn::linear(nn::linear(Var(x), w1, Var()), w2, Var()), w3, Var())),
                      nn::sum(nn::linear(nn::linear(nn::linear(Var(x), w1, Var()), w2, Var()), w3, Var())));
  REQUIRE_THROWS_WITH(backward(twice), Catch::Contains("graph must not change"));
  clear_tape();
  for (auto& p : params) p.var.zero_grad();
  // A parameter without a gradient (a fresh reducer: the failed step above left the old one mid-step).
  reducer_owner = std::make_unique<dist::GradReducer>(params, comm, caps);
  Var without_w1 = nn::sum(nn::linear(nn::linear(Var(testing::random_tensor({5, 8}, 6)), w2, Var()), w3, Var()));
  backward(without_w1);
  REQUIRE_THROWS_WITH(reducer_owner->finish(), Catch::Contains("w1 got no gradient"));
}

TEST_CASE("loader shards: N ranks together see exactly the single process's batches") {
  auto ds = testing::synthetic_dataset(50);
  data::AugmentConfig aug;  // random crops and flips: the shards must augment as the whole does
  aug.random_crop = true;
  aug.crop_padding = 2;
  aug.hflip = true;
  for (bool drop_last : {true, false}) {
    data::DataLoader whole(ds, 12, true, drop_last, aug, 7, Device::CPU, 1);
    whole.start_epoch(2);
    std::vector<data::DataLoader*> shards;
    std::vector<std::unique_ptr<data::DataLoader>> owned;
    for (int r = 0; r < 5; ++r) {
      owned.push_back(std::make_unique<data::DataLoader>(ds, 12, true, drop_last, aug, 7, Device::CPU, 1));
      owned.back()->set_shard(r, 5);
      owned.back()->start_epoch(2);
    }
    data::Batch b, s;
    int64_t batches = 0;
    while (whole.next(b)) {
      std::vector<int64_t> joined;
      std::vector<float> images;
      for (auto& l : owned) {
        if (l->batches_per_epoch() <= batches) continue;  // its slice of the last, short batch is empty
        REQUIRE(l->next(s));
        joined.insert(joined.end(), s.indices.begin(), s.indices.end());
        std::vector<float> v = s.images.to_vector();
        images.insert(images.end(), v.begin(), v.end());
      }
      REQUIRE(joined == b.indices);
      REQUIRE(images == b.images.to_vector());  // same augmentation as the single process
      ++batches;
    }
    for (auto& l : owned) REQUIRE_FALSE(l->next(s));
    REQUIRE(batches == (drop_last ? 4 : 5));
  }
}

TEST_CASE("sync BN on one rank is exactly BatchNorm, forward and backward, and BatchNorm2d uses it while switched on") {
  auto comm = dist::make_single_process_communicator();
  const Tensor x = testing::random_tensor({4, 3, 5, 5}, 31, -2.f, 3.f), g = testing::random_tensor({4, 3, 5, 5}, 32);
  Tensor rm1 = Tensor::full({3}, 0.3f), rv1 = Tensor::full({3}, 1.5f), rm2 = rm1.clone(), rv2 = rv1.clone();
  Var x1(x.clone(), true), x2(x.clone(), true), w1(Tensor::full({3}, 1.2f), true), w2(Tensor::full({3}, 1.2f), true);
  Var o1 = nn::batch_norm(x1, w1, Var(), rm1, rv1, true, 0.1f, 1e-5f);
  Var o2 = dist::sync_batch_norm(*comm, x2, w2, Var(), rm2, rv2, 0.1f, 1e-5f);
  backward(nn::add(nn::sum(nn::mul(o1, Var(g))), nn::sum(nn::mul(o2, Var(g)))));
  REQUIRE(o2.value().to_vector() == o1.value().to_vector());
  REQUIRE(rm2.to_vector() == rm1.to_vector());
  REQUIRE(rv2.to_vector() == rv1.to_vector());
  testing::require_close(x2.grad(), x1.grad(), 1e-6f, 1e-5f, "grad_input");
  testing::require_close(w2.grad(), w1.grad(), 1e-6f, 1e-5f, "grad_weight");

  nn::BatchNorm2d bn(3);
  Tensor rm3 = Tensor::zeros({3}), rv3 = Tensor::full({3}, 1.f);
  const Tensor plain = nn::batch_norm(Var(x), Var(), Var(), rm3, rv3, true, 0.1f, 1e-5f).value();
  {
    dist::SyncBatchNormScope scope(*comm);
    REQUIRE(bn.forward(Var(x)).value().to_vector() == plain.to_vector());
    REQUIRE(bn.running_var().to_vector() == rv3.to_vector());
  }
  Tensor rm4 = Tensor::zeros({3}), rv4 = Tensor::full({3}, 1.f);
  REQUIRE(bn.forward(Var(x)).value().to_vector() == nn::batch_norm(Var(x), Var(), Var(), rm4, rv4, true, 0.1f, 1e-5f).value().to_vector());
}

TEST_CASE("sync BN with a fused ReLU on one rank is exactly BatchNorm's, and a fused BatchNorm2d keeps it under the switch") {
  auto comm = dist::make_single_process_communicator();
  const Tensor x = testing::random_tensor({4, 3, 5, 5}, 33, -2.f, 3.f), g = testing::random_tensor({4, 3, 5, 5}, 34);
  const Tensor w = testing::random_tensor({3}, 35, 0.5f, 2.f), b = testing::random_tensor({3}, 36);
  Tensor rm1 = Tensor::full({3}, 0.3f), rv1 = Tensor::full({3}, 1.5f), rm2 = rm1.clone(), rv2 = rv1.clone();
  Var x1(x.clone(), true), x2(x.clone(), true), w1(w.clone(), true), w2(w.clone(), true), b1(b.clone(), true),
      b2(b.clone(), true);
  Var o1 = nn::batch_norm(x1, w1, b1, rm1, rv1, true, 0.1f, 1e-5f, /*relu=*/true);
  Var o2 = dist::sync_batch_norm(*comm, x2, w2, b2, rm2, rv2, 0.1f, 1e-5f, /*relu=*/true);
  backward(nn::add(nn::sum(nn::mul(o1, Var(g))), nn::sum(nn::mul(o2, Var(g)))));
  const std::vector<float> out = o2.value().to_vector();
  REQUIRE(out == o1.value().to_vector());
  REQUIRE(std::count(out.begin(), out.end(), 0.f) > 0);  // the ReLU did cut
  REQUIRE(*std::min_element(out.begin(), out.end()) == 0.f);
  REQUIRE(rv2.to_vector() == rv1.to_vector());
  testing::require_close(x2.grad(), x1.grad(), 1e-6f, 1e-5f, "grad_input");
  testing::require_close(w2.grad(), w1.grad(), 1e-6f, 1e-5f, "grad_weight");
  testing::require_close(b2.grad(), b1.grad(), 1e-6f, 1e-5f, "grad_bias");

  nn::BatchNorm2d bn(3);
  bn.fuse_relu();
  Tensor rm3 = Tensor::zeros({3}), rv3 = Tensor::full({3}, 1.f);
  const Tensor fused = nn::batch_norm(Var(x), Var(), Var(), rm3, rv3, true, 0.1f, 1e-5f, true).value();
  dist::SyncBatchNormScope scope(*comm);
  REQUIRE(bn.forward(Var(x)).value().to_vector() == fused.to_vector());
}

TEST_CASE("--gpus launcher: rank 0's bytes reach every rank; a failed rank stops the others at once") {
  // All ranks succeed; each checks the bytes it got from rank 0.
  REQUIRE(dist::run_local_ranks(3, [](int rank) {
            char id[128];
            std::memset(id, rank == 0 ? 'x' : 0, sizeof id);
            dist::local_share_from_rank0(id, sizeof id, 10);
            for (char c : id)
              if (c != 'x') return 1;
            return dist::local_rank().size == 3 ? 0 : 1;
          }) == 0);
  // Rank 1 fails while the others would run for a minute: they are stopped, its code comes back.
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(dist::run_local_ranks(3, [](int rank) {
            if (rank == 1) return 5;
            std::this_thread::sleep_for(std::chrono::seconds(60));
            return 0;
          }) == 5);
  REQUIRE(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20));
  // A rank killed by a signal; and a rank ignoring SIGTERM is killed after the grace period.
  t0 = std::chrono::steady_clock::now();
  REQUIRE(dist::run_local_ranks(2, [](int rank) {
            if (rank == 0) raise(SIGKILL);
            signal(SIGTERM, SIG_IGN);
            std::this_thread::sleep_for(std::chrono::seconds(60));
            return 0;
          }, /*grace_s=*/1) == 128 + SIGKILL);
  REQUIRE(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20));
  // Rank 0 dies before sharing: the others fail at once with a message instead of waiting.
  REQUIRE(dist::run_local_ranks(2, [](int rank) {
            if (rank == 0) _exit(7);
            char id[16];
            try {
              dist::local_share_from_rank0(id, sizeof id, 60);
            } catch (const Error& e) {
              return std::strstr(e.what(), "rank 0 exited before sending") ? 0 : 1;
            }
            return 1;
          }) == 7);
}

TEST_CASE("the watchdog ends a rank whose blocking call passes the timeout, with a message") {
  const auto t0 = std::chrono::steady_clock::now();
  const int code = dist::run_local_ranks(1, [](int) {
    dist::Watchdog w(0, 0.3);
    dist::Watchdog::Section s(w, "a test collective");
    std::this_thread::sleep_for(std::chrono::seconds(30));
    return 0;
  });
  REQUIRE(code == dist::kExitRankFailure);
  REQUIRE(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
  // Sections that end in time, and a poll that reports a failure.
  REQUIRE(dist::run_local_ranks(1, [](int) {
            dist::Watchdog w(0, 5);
            for (int i = 0; i < 3; ++i) dist::Watchdog::Section s(w, "quick");
            return 0;
          }) == 0);
  REQUIRE(dist::run_local_ranks(1, [](int) {
            dist::Watchdog w(0, 60, [] { return std::string("peer reported an error"); });
            std::this_thread::sleep_for(std::chrono::seconds(30));
            return 0;
          }) == dist::kExitRankFailure);
}

#include "engine/dist/communicator.h"

#include <cstdio>
#include <cstdlib>

#include "common/error.h"

namespace mdq::dist {
namespace {

class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  Device device() const override { return Device::CPU; }
  std::string describe() const override { return "single process"; }
  void all_reduce_sum(float*, int64_t) override {}
  void all_reduce_sum(double*, int64_t) override {}
  void broadcast(void*, int64_t, int root) override { check_root(root); }
  void start_mean(float*, int64_t) override {}
  void finish_means() override {}
  void all_reduce_sum_host(double*, int64_t) override {}
  void broadcast_host(void*, int64_t, int root) override { check_root(root); }
  void barrier() override {}
  [[noreturn]] void abort(const std::string& why) override { die(0, why); }

 private:
  static void check_root(int root) { MDQ_CHECK(root == 0, "broadcast: root " << root << " but there is one rank"); }
};

}  // namespace

std::unique_ptr<Communicator> make_single_process_communicator() { return std::make_unique<SingleProcess>(); }

void broadcast_string(Communicator& c, std::string& s, int root) {
  double size = static_cast<double>(s.size());  // exact for any realistic length
  c.broadcast_host(&size, sizeof size, root);
  s.resize(static_cast<size_t>(size));
  if (!s.empty()) c.broadcast_host(&s[0], static_cast<int64_t>(s.size()), root);
}

void die(int rank, const std::string& why) {
  std::fprintf(stderr, "\nmdq rank %d: %s\n", rank, why.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  std::_Exit(kExitRankFailure);
}

}  // namespace mdq::dist

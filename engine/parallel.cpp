#include "engine/parallel.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <thread>
#include <vector>

namespace mdq {

int64_t parallel_chunks(int64_t n, int64_t chunks, const std::function<void(int64_t, int64_t, int64_t)>& body) {
  chunks = std::max<int64_t>(1, std::min(chunks, n));
  const int64_t threads =
      std::min<int64_t>(chunks, std::max<int64_t>(1, static_cast<int64_t>(std::thread::hardware_concurrency())));
  auto range = [&](int64_t c, int64_t& b, int64_t& e) {
    b = n * c / chunks;
    e = n * (c + 1) / chunks;
  };
  if (threads == 1) {
    for (int64_t c = 0; c < chunks; ++c) {
      int64_t b, e;
      range(c, b, e);
      body(c, b, e);
    }
    return chunks;
  }
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::atomic<bool> failed{false};
  auto worker = [&] {
    for (int64_t c = next++; c < chunks; c = next++) {
      int64_t b, e;
      range(c, b, e);
      try {
        body(c, b, e);
      } catch (...) {
        if (!failed.exchange(true)) error = std::current_exception();
      }
    }
  };
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  return chunks;
}

}  // namespace mdq

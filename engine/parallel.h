// A small parallel-for for the CPU backend: splits [0, n) into fixed chunks and runs them on up
// to hardware_concurrency threads. The chunking does not depend on the thread count, so code that
// reduces per-chunk partials in chunk order gets the same bits on any machine.
#pragma once
#include <cstdint>
#include <functional>

namespace mdq {

// Calls body(chunk, begin, end) for `chunks` contiguous pieces of [0, n) (fewer when n < chunks).
// Returns the number of chunks used.
int64_t parallel_chunks(int64_t n, int64_t chunks, const std::function<void(int64_t, int64_t, int64_t)>& body);

}  // namespace mdq

// A copy_spans workload for the CPU and GPU tests: src holds seeded random values, dst a sentinel;
// the spans take pieces of src (odd word counts, empty ones, ones longer than the kernel's chunk,
// starts off the 16-byte grid) to scattered, non-overlapping places of dst, more spans than one
// launch carries. expected() is dst after the copies, computed on the host.
#pragma once
#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "engine/ops/copy_spans.h"
#include "engine/tensor.h"

namespace mdq::testing {

struct CopySpansCase {
  struct Piece {
    int64_t src, dst, words;  // offsets and length, in floats
  };
  std::vector<Piece> pieces;
  int64_t src_words = 0, dst_words = 0;

  explicit CopySpansCase(uint64_t seed, int count = 150) {
    std::mt19937_64 rng(seed);
    const int64_t sizes[] = {0, 1, 3, 4, 5, 17, 64, 1000, 8191, 8192, 8193, 20000};
    for (int i = 0; i < count; ++i) {
      const int64_t words = sizes[rng() % (sizeof sizes / sizeof sizes[0])];
      const int64_t src_gap = static_cast<int64_t>(rng() % 4), dst_gap = static_cast<int64_t>(rng() % 4);
      pieces.push_back({src_words + src_gap, dst_words + dst_gap, words});
      src_words += src_gap + words;
      dst_words += dst_gap + words;
    }
    std::shuffle(pieces.begin(), pieces.end(), rng);  // span order unrelated to address order
  }

  Tensor source(Device device) const { return Tensor::uniform({src_words}, -5.f, 5.f, 77, device); }
  Tensor destination(Device device) const { return Tensor::full({dst_words}, -7.25f, device); }

  std::vector<ops::CopySpan> spans(const Tensor& src, Tensor& dst) const {
    std::vector<ops::CopySpan> out;
    for (const Piece& p : pieces)
      out.push_back({dst.data<float>() + p.dst, src.data<float>() + p.src, static_cast<size_t>(p.words) * 4});
    return out;
  }

  std::vector<float> expected() const {
    const std::vector<float> s = source(Device::CPU).to_vector();
    std::vector<float> d(static_cast<size_t>(dst_words), -7.25f);
    for (const Piece& p : pieces)
      for (int64_t i = 0; i < p.words; ++i) d[static_cast<size_t>(p.dst + i)] = s[static_cast<size_t>(p.src + i)];
    return d;
  }
};

}  // namespace mdq::testing

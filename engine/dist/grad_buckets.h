// Which gradients travel together: a fixed bucket layout, the same on every rank and in every run.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace mdq::dist {

struct BucketLayout {
  struct Entry {
    size_t param;    // index in the parameter list
    int64_t offset;  // first element in the bucket's flat buffer
    int64_t numel;
  };
  struct Bucket {
    std::vector<Entry> entries;
    int64_t numel = 0;
  };
  std::vector<Bucket> buckets;
  std::vector<size_t> bucket_of;  // per parameter
};

// Every parameter in exactly one bucket. Parameters go in reverse order (backward computes the
// last layers' gradients first, so the first bucket is complete first) and are packed greedily:
// a bucket closes when the next parameter would take it past cap_bytes (first_cap_bytes for the
// first bucket, so that the first reduction starts early, as PyTorch DDP does); a parameter larger
// than the cap gets a bucket of its own. Depends only on the sizes and the caps.
BucketLayout make_bucket_layout(const std::vector<int64_t>& numels, size_t cap_bytes, size_t first_cap_bytes);

}  // namespace mdq::dist

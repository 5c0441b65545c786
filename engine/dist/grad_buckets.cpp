#include "engine/dist/grad_buckets.h"

#include "common/error.h"

namespace mdq::dist {

BucketLayout make_bucket_layout(const std::vector<int64_t>& numels, size_t cap_bytes, size_t first_cap_bytes) {
  MDQ_CHECK(cap_bytes > 0 && first_cap_bytes > 0, "make_bucket_layout: bucket caps must be positive");
  BucketLayout layout;
  layout.bucket_of.assign(numels.size(), 0);
  for (size_t k = numels.size(); k-- > 0;) {
    MDQ_CHECK(numels[k] > 0, "make_bucket_layout: parameter " << k << " has " << numels[k] << " elements");
    const size_t cap = layout.buckets.size() == 1 ? first_cap_bytes : cap_bytes;  // the open bucket's cap
    const size_t bytes = static_cast<size_t>(numels[k]) * sizeof(float);
    const bool open = !layout.buckets.empty() &&
                      static_cast<size_t>(layout.buckets.back().numel) * sizeof(float) + bytes <= cap;
    if (!open) layout.buckets.emplace_back();
    BucketLayout::Bucket& b = layout.buckets.back();
    b.entries.push_back({k, b.numel, numels[k]});
    b.numel += numels[k];
    layout.bucket_of[k] = layout.buckets.size() - 1;
  }
  return layout;
}

}  // namespace mdq::dist

// ops::copy_spans on the CPU: the reference the GPU test compares the kernel with.
#include <algorithm>

#include "tests/support/copy_spans_case.h"
#include "tests/support/testing.h"

using namespace mdq;

TEST_CASE("copy_spans copies every span and leaves the rest of the destination alone") {
  const testing::CopySpansCase c(3);
  REQUIRE(c.pieces.size() > static_cast<size_t>(kernels::kCopySpansMax));  // several launches on a GPU
  const Tensor src = c.source(Device::CPU);
  Tensor dst = c.destination(Device::CPU);
  ops::copy_spans(Device::CPU, c.spans(src, dst));
  REQUIRE(dst.to_vector() == c.expected());
  ops::copy_spans(Device::CPU, {});  // nothing to do is fine
}

TEST_CASE("copy_spans refuses spans that are not whole 4-byte words") {
  std::vector<float> a(8, 1.f), b(8, 0.f);
  REQUIRE_THROWS_WITH(ops::copy_spans(Device::CPU, {{b.data(), a.data(), 4}, {b.data() + 2, a.data(), 6}}),
                      Catch::Contains("span 1 (6 bytes") && Catch::Contains("not whole 4-byte words"));
  auto* odd = reinterpret_cast<char*>(b.data()) + 2;
  REQUIRE_THROWS_WITH(ops::copy_spans(Device::CPU, {{odd, a.data(), 4}}), Catch::Contains("span 0"));
  REQUIRE_THROWS_WITH(ops::copy_spans(Device::CPU, {{nullptr, a.data(), 4}}), Catch::Contains("null pointer"));
  REQUIRE(b == std::vector<float>(8, 0.f));  // checked before anything is copied
}

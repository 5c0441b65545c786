// Tensor copies, seeded init and the caching allocator on the GPU (the elementwise kernels are
// in the op table, tests/ops/).
#include "tests/support/testing.h"

using namespace mdq;

TEST_CASE("host-device round trip and seeded init agree across devices") {
  Tensor a = Tensor::uniform({1001}, -3, 3, 5, Device::CUDA);
  REQUIRE(a.to_vector() == Tensor::uniform({1001}, -3, 3, 5).to_vector());
  Tensor b = a.clone();
  REQUIRE(b.to_vector() == a.to_vector());
}

TEST_CASE("the caching allocator reuses blocks in steady state") {
  for (int i = 0; i < 3; ++i) Tensor::empty({1 << 20}, DType::F32, Device::CUDA);
  uint64_t before = cuda_allocator_stats().cuda_malloc_calls;
  for (int i = 0; i < 10; ++i) {
    Tensor t = Tensor::empty({1 << 20}, DType::F32, Device::CUDA);
    Tensor u = Tensor::empty({1000}, DType::F32, Device::CUDA);
  }
  REQUIRE(cuda_allocator_stats().cuda_malloc_calls == before);
}

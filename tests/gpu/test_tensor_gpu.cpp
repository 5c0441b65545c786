// Tensor copies, random init and elementwise kernels on the GPU against the CPU reference.
#include "engine/ops/elementwise.h"
#include "tests/support/testing.h"

using namespace mdq;

TEST_CASE("host-device round trip and seeded init agree across devices") {
  Tensor a = Tensor::uniform({1001}, -3, 3, 5, Device::CUDA);
  REQUIRE(a.to_vector() == Tensor::uniform({1001}, -3, 3, 5).to_vector());
  Tensor b = a.clone();
  REQUIRE(b.to_vector() == a.to_vector());
}

TEST_CASE("elementwise kernels match the CPU reference") {
  for (int64_t n : {1, 7, 1000, 65537}) {
    Tensor a = testing::random_tensor({n}, 10 + n), b = testing::random_tensor({n}, 20 + n);
    Tensor ga = a.cuda(), gb = b.cuda();
    testing::require_close(ops::add(ga, gb), ops::add(a, b), 0, 0, "add");
    testing::require_close(ops::sub(ga, gb), ops::sub(a, b), 0, 0, "sub");
    testing::require_close(ops::mul(ga, gb), ops::mul(a, b), 0, 0, "mul");
    testing::require_close(ops::scale(ga, 1.5f), ops::scale(a, 1.5f), 0, 0, "scale");
    Tensor y = a.clone(), gy = ga.clone();
    ops::axpy_(y, -0.25f, b);
    ops::axpy_(gy, -0.25f, gb);
    testing::require_close(gy, y, 1e-6f, 0, "axpy");
    testing::require_close(ops::sum_all(ga), ops::sum_all(a), 1e-4f, 1e-5f, "sum");
  }
}

TEST_CASE("mixing devices is an error that names both operands") {
  Tensor a = Tensor::zeros({3}), b = Tensor::zeros({3}, DType::F32, Device::CUDA);
  REQUIRE_THROWS_WITH(ops::add(a, b), Catch::Contains("f32[3]@cpu") && Catch::Contains("f32[3]@cuda"));
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

// Tensor copies, seeded init and the caching allocator on the GPU (the elementwise kernels are
// in the op table, tests/ops/).
#include "tests/support/copy_spans_case.h"
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

TEST_CASE("copy_spans on the GPU equals the CPU reference") {
  // Spans of odd lengths and alignments, empty ones, ones longer than a chunk, 150 of them (three
  // launches): the destination must match the CPU reference exactly, untouched places included.
  const testing::CopySpansCase c(3);
  const Tensor src_cpu = c.source(Device::CPU), src_gpu = c.source(Device::CUDA);
  Tensor dst_cpu = c.destination(Device::CPU), dst_gpu = c.destination(Device::CUDA);
  ops::copy_spans(Device::CPU, c.spans(src_cpu, dst_cpu));
  ops::copy_spans(Device::CUDA, c.spans(src_gpu, dst_gpu));
  REQUIRE(dst_gpu.to_vector() == dst_cpu.to_vector());
  REQUIRE(dst_cpu.to_vector() == c.expected());
}

TEST_CASE("the caching allocator's peak is the most bytes in use at once since the last reset") {
  cuda_allocator_reset_peak();
  const size_t base = cuda_allocator_stats().bytes_in_use;
  REQUIRE(cuda_allocator_stats().peak_bytes_in_use == base);
  const size_t mib = size_t(1) << 20;
  {
    Tensor a = Tensor::empty({int64_t(4 * mib / 4)}, DType::F32, Device::CUDA);   // 4 MiB
    Tensor b = Tensor::empty({int64_t(6 * mib / 4)}, DType::F32, Device::CUDA);   // 6 MiB
    CHECK(cuda_allocator_stats().peak_bytes_in_use == base + 10 * mib);
  }
  Tensor c = Tensor::empty({int64_t(2 * mib / 4)}, DType::F32, Device::CUDA);  // 2 MiB, after both went back
  CHECK(cuda_allocator_stats().bytes_in_use == base + 2 * mib);
  CHECK(cuda_allocator_stats().peak_bytes_in_use == base + 10 * mib);
  cuda_allocator_reset_peak();
  CHECK(cuda_allocator_stats().peak_bytes_in_use == base + 2 * mib);
}

// The backend registry (engine/backend/registry.h) in the build at hand, no GPU needed: a CUDA
// build registers an implementation in every slot of the CUDA table (a forgotten register line
// fails here, not on a GPU host), a build without CUDA leaves every slot empty, and asking for an
// empty slot is an mdq::Error naming the op.
#include <cstdint>
#include <cstring>

#include "engine/backend/registry.h"
#include "engine/device.h"
#include "tests/support/testing.h"

using namespace mdq;

namespace {

// The table is one function pointer per slot and nothing else, so its bytes are its slots.
using AnySlot = void (*)();
constexpr size_t kSlots = sizeof(backend::CudaBackend) / sizeof(AnySlot);
static_assert(sizeof(backend::CudaBackend) == kSlots * sizeof(AnySlot), "CudaBackend holds only function pointers");

size_t filled_slots() {
  const backend::CudaBackend& table = backend::cuda();
  size_t filled = 0;
  for (size_t i = 0; i < kSlots; ++i) {
    uintptr_t slot = 0;
    std::memcpy(&slot, reinterpret_cast<const unsigned char*>(&table) + i * sizeof(AnySlot), sizeof(slot));
    filled += slot != 0 ? 1 : 0;
  }
  return filled;
}

void relu_stub(kernels::Activation, const float*, float*, int64_t) {}

}  // namespace

TEST_CASE("the CUDA table is complete in a CUDA build and empty without CUDA") {
  INFO(kSlots << " slots, " << filled_slots() << " filled");
  if (backend::has_cuda()) {
    REQUIRE(filled_slots() == kSlots);
  } else {
    REQUIRE(filled_slots() == 0);
    REQUIRE_FALSE(cuda_available());
    REQUIRE_THROWS_WITH(Tensor::empty({2}, DType::F32, Device::CUDA),
                        Catch::Contains("cannot allocate a CUDA tensor: this build has no CUDA backend"));
  }
}

TEST_CASE("a CPU tensor runs the CPU function; a missing CUDA one is an error naming the op") {
  REQUIRE(backend::dispatch("relu", Device::CPU, relu_stub, &backend::CudaBackend::activation_forward_f32) ==
          &relu_stub);
  REQUIRE_THROWS_WITH(backend::throw_not_registered("relu"),
                      Catch::Contains("relu: no CUDA implementation is registered"));
  if (!backend::has_cuda())
    REQUIRE_THROWS_WITH(
        backend::dispatch("relu", Device::CUDA, relu_stub, &backend::CudaBackend::activation_forward_f32),
        Catch::Contains("this build has no CUDA backend"));
}

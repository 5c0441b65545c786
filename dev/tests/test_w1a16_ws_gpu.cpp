// The workshop's warp-specialised W1A16 / W2A16 kernel (dev/kernels/w1a16_ws.cu) against the CPU
// reference of packed::w1a16_conv2d, each of its three tiles on every shape: O below, at and above
// the tile's channels (partial channel tiles), C = 32/40 (a 64-channel chunk past C) up to 1000, stride
// 1 and 2, 1x1 and 3x3 taps, a 5x5 kernel (25 taps), many pixel tiles; binary and
// ternary weights; f32 and bf16 outputs with scale and ReLU.
#include <string>

#include "dev/kernels/w1a16_ws.h"
#include "engine/packed/bitpack.h"
#include "tests/support/conv_case.h"
#include "tests/support/testing.h"
#include "tests/support/w1a16_case.h"

using namespace mdq;
using namespace mdq::packed;

namespace {

using testing::describe;

// Every C a multiple of 8 (the kernel's 16-byte activation loads).
const testing::ConvCase kCases[] = {
    {2, 64, 16, 16, 64, 3, 1, 1},  {4, 128, 9, 9, 130, 3, 1, 1},  {5, 64, 11, 13, 200, 3, 2, 1},
    {8, 64, 17, 17, 64, 3, 1, 1},  {2, 64, 9, 9, 128, 1, 2, 0},   {1, 1000, 5, 5, 70, 3, 1, 1},
    {3, 64, 40, 41, 64, 3, 1, 1},  {4, 32, 95, 95, 40, 3, 1, 1},  {3, 64, 56, 56, 200, 3, 1, 1},
    {16, 40, 57, 57, 130, 3, 2, 1}, {2, 64, 9, 9, 96, 1, 1, 0},   {3, 128, 14, 14, 256, 1, 2, 0},
    {1, 40, 6, 6, 8, 3, 1, 1},      {8, 64, 96, 96, 64, 3, 1, 1},  {1, 96, 9, 9, 40, 5, 1, 2},
};

}  // namespace

TEST_CASE("dev W1A16 / W2A16 warp-specialised kernel matches the float convolution of bf16-rounded inputs") {
  {
    Tensor x = to_bf16(testing::random_tensor({1, 4, 4, 64}, 1)).cuda();
    PackedWeights w = pack_binary_weights(testing::random_signs({8, 64, 3, 3}, 2)).to(Device::CUDA);
    if (!dev::w1a16_ws_conv2d(x, w, {1, 1}).defined()) {
      WARN("not run: the dev W1A16 warp-specialised kernel needs a build with sm_90a code (CMAKE_CUDA_ARCHITECTURES "
           "with 90a) and a GPU of compute capability 9.0");
      return;
    }
  }
  // Tolerance as for the main path's kernels (tests/support/w1a16_case.h).
  for (const testing::ConvCase& c : kCases) {
    for (bool ternary : {false, true}) {
      const testing::W1A16Reference r = testing::w1a16_reference(c, ternary);
      const testing::W1A16DeviceInputs d(r);
      for (int tile : {64, 128, 256}) {
        INFO(describe(c) << (ternary ? " ternary" : " binary") << ", tile channels " << tile);
        testing::require_matches_w1a16_reference(
            r, d, [&](const FloatOutput& out) { return dev::w1a16_ws_conv2d(d.x, d.w, r.g, out, tile); }, describe(c));
      }
    }
  }
}

TEST_CASE("dev W1A16 warp-specialised kernel declines channel counts it cannot load, and bad arguments are errors") {
  Tensor x = to_bf16(testing::random_tensor({1, 5, 5, 33}, 3)).cuda();
  PackedWeights w = pack_binary_weights(testing::random_signs({8, 33, 3, 3}, 4)).to(Device::CUDA);
  REQUIRE_FALSE(dev::w1a16_ws_conv2d(x, w, {1, 1}).defined());  // C % 8 != 0: the main path's general kernel
  REQUIRE_THROWS_WITH(dev::w1a16_ws_conv2d(x.cpu(), w, {1, 1}), Catch::Contains("on the GPU"));
  REQUIRE_THROWS_WITH(dev::w1a16_ws_conv2d(x, w, {0, 1}), Catch::Contains("stride 0"));
  Tensor x8 = to_bf16(testing::random_tensor({1, 5, 5, 64}, 5)).cuda();
  PackedWeights w8 = pack_binary_weights(testing::random_signs({8, 64, 3, 3}, 6)).to(Device::CUDA);
  REQUIRE_THROWS_WITH(dev::w1a16_ws_conv2d(x8, w8, {1, 1}, {}, 96), Catch::Contains("tile_channels 96"));
}

// Autograd where x feeds two branches (a residual's shortcut and a convolution): a gradient may
// be shared between Vars, and the convolution's input gradient is summed into the one x already
// has by the pass that produces it (ops::conv2d_backward's input_grad_sum) when x alone holds
// that gradient. The same checks run on the CPU (tests/cpu/test_nn_modules.cpp) and the GPU at
// each precision (tests/gpu/test_nn_modules_gpu.cpp): every sum must equal the plain one bit for bit.
#pragma once
#include <catch2/catch.hpp>

#include "engine/autograd.h"
#include "engine/nn/conv2d.h"
#include "engine/nn/functional.h"
#include "engine/ops/conv2d.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/layout.h"
#include "tests/support/testing.h"

namespace mdq::testing {

inline void check_conv_grad_sum(Device d) {
  const ops::Conv2dParams p{1, 1, 1};
  const Tensor x = random_tensor({4, 16, 8, 8}, 71, -1.f, 1.f, d), w = random_tensor({16, 16, 3, 3}, 72, -1.f, 1.f, d);
  const Tensor dy = random_tensor({4, 16, 8, 8}, 73, -1.f, 1.f, d), s = random_tensor({4, 16, 8, 8}, 74, -1.f, 1.f, d);
  const ops::Conv2dGrads fresh = ops::conv2d_backward(dy, x, w, p, true, true);
  const Tensor want = ops::add(s, fresh.input);

  SECTION("the op adds its input gradient into the one given") {
    Tensor sum = s.clone();
    const ops::Conv2dGrads into = ops::conv2d_backward(dy, x, w, p, true, true, &sum);
    CHECK_FALSE(into.input.defined());
    REQUIRE(bits(sum) == bits(want));
    REQUIRE(bits(into.weight) == bits(fresh.weight));
    Tensor wrong = Tensor::zeros({4, 16, 8, 9}, DType::F32, d);
    REQUIRE_THROWS_WITH(ops::conv2d_backward(dy, x, w, p, true, true, &wrong),
                        Catch::Contains("conv2d_backward") && Catch::Contains("f32[4, 16, 8, 9]"));
  }
  SECTION("autograd sums in place when x alone holds its gradient") {
    // The shortcut's use of x is recorded after the convolution, so its gradient reaches x first.
    Var xv(x, true), wv(w, true);
    const Var c = nn::conv2d(xv, wv, Var(), p);
    backward(nn::sum(nn::add(nn::mul(c, Var(dy)), nn::mul(xv, Var(s)))));
    REQUIRE(bits(xv.grad()) == bits(want));
    REQUIRE(bits(wv.grad()) == bits(fresh.weight));
  }
  SECTION("autograd makes a fresh sum when x's gradient is shared, and the sharer's stays as it was") {
    // add hands one gradient to both c and x; x's is still c's when the convolution adds into it.
    Var xv(x, true), wv(w, true);
    const Var c = nn::conv2d(xv, wv, Var(), p);
    backward(nn::sum(nn::add(c, xv)));
    const Tensor ones = Tensor::full(x.shape(), 1.f, d);
    const ops::Conv2dGrads from_ones = ops::conv2d_backward(ones, x, w, p, true, false);
    REQUIRE(bits(xv.grad()) == bits(ops::add(ones, from_ones.input)));
    // Under bf16 on the GPU c is an NHWC bf16 activation (engine/ops/layout.h); its gradient
    // is the ones in that form.
    const Tensor c_grad = ops::is_nhwc_bf16(c.grad()) ? ops::to_nchw_f32(c.grad()) : c.grad();
    REQUIRE(bits(c_grad) == bits(ones));
  }
}

// Two leaves that got one shared gradient: a later backward adds into one of them only.
inline void check_shared_grads_stay_apart(Device d) {
  Var a(random_tensor({3, 5}, 81, -1.f, 1.f, d), true), b(random_tensor({3, 5}, 82, -1.f, 1.f, d), true);
  backward(nn::sum(nn::add(a, b)));
  const Tensor s = random_tensor({3, 5}, 83, -1.f, 1.f, d);
  backward(nn::sum(nn::mul(a, Var(s))));
  const Tensor ones = Tensor::full({3, 5}, 1.f, d);
  REQUIRE(bits(b.grad()) == bits(ones));
  REQUIRE(bits(a.grad()) == bits(ops::add(ones, s)));
}

}  // namespace mdq::testing

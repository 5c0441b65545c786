// What the stem kernels' launchers share (kernels/stem_conv.cu, the direct f32 kernel, and
// kernels/stem_conv_mma.cu, the tensor-core one): the check that a stem fits, and the
// compile-time (C, O, stride) of one that does.
#pragma once
#include <type_traits>

#include "common/error.h"
#include "kernels/stem_conv.h"

namespace mdq::kernels {

template <int V>
using StemInt = std::integral_constant<int, V>;

// a fits the kernels (stem_conv_fits, or stem_signs_fit for the signs form), else an mdq::Error
// saying what `kernel` ("stem_conv_signs: the direct kernel") does not take.
template <bool Signs>
void stem_check_fits(const StemConvArgs& a, const char* kernel) {
  const bool fits = Signs ? stem_signs_fit(a.C, a.O, a.KH, a.KW, a.stride, a.pad)
                          : stem_conv_fits(a.C, a.O, a.KH, a.KW, a.stride, a.pad);
  MDQ_CHECK(fits, kernel << " does not take C " << a.C << ", O " << a.O << ", window " << a.KH << "x" << a.KW
                         << ", stride " << a.stride << ", padding " << a.pad
                         << (Signs ? " (see stem_signs_fit)" : " (see stem_conv_fits)"));
}

// Calls f(StemInt<C>, StemInt<O>, StemInt<S>) with a's input channels (1-4), filters (16, 32,
// 64; the signs form 32, 64) and stride (1, 2) as compile-time constants: the instantiations a
// stem kernel compiles, 4 x 3 x 2 (the signs form 4 x 2 x 2). a must fit (stem_conv_fits, or
// stem_signs_fit for the signs form).
template <bool Signs, class F>
void stem_dispatch(const StemConvArgs& a, F&& f) {
  auto by_stride = [&](auto c, auto o) {
    if (a.stride == 1) f(c, o, StemInt<1>{});
    else f(c, o, StemInt<2>{});
  };
  auto by_filters = [&](auto c) {
    if constexpr (!Signs) {
      if (a.O == 16) return by_stride(c, StemInt<16>{});
    }
    if (a.O == 32) by_stride(c, StemInt<32>{});
    else by_stride(c, StemInt<64>{});
  };
  switch (a.C) {
    case 1: by_filters(StemInt<1>{}); break;
    case 2: by_filters(StemInt<2>{}); break;
    case 3: by_filters(StemInt<3>{}); break;
    default: by_filters(StemInt<4>{}); break;
  }
}

}  // namespace mdq::kernels

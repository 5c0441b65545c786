// One convolution shape of the packed-kernel sweeps (tests/gpu/test_packed_gpu.cpp and the
// workshop's dev/tests/): NHWC input N x H x W x C, O filters of K x K, stride, zero padding.
#pragma once
#include <cstdint>
#include <sstream>
#include <string>

namespace mdq::testing {

struct ConvCase { int64_t N, C, H, W, O, K, stride, pad; };

inline std::string describe(const ConvCase& c) {
  std::ostringstream s;
  s << "N " << c.N << " C " << c.C << " H " << c.H << " W " << c.W << " O " << c.O << " K " << c.K << " stride "
    << c.stride << " pad " << c.pad;
  return s.str();
}

}  // namespace mdq::testing

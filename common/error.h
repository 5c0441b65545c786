// Errors: one exception type whose message says what went wrong and what to do next. In common/
// because the engine and the CUDA backend (kernels/) both throw it, and kernels/ include nothing
// from engine/.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace mdq {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace mdq

// MDQ_CHECK(cond, a << b << c): throws mdq::Error with the streamed message when cond is false.
#define MDQ_CHECK(cond, message)                 \
  do {                                           \
    if (!(cond)) {                               \
      std::ostringstream mdq_check_stream_;      \
      mdq_check_stream_ << message;              \
      throw ::mdq::Error(mdq_check_stream_.str()); \
    }                                            \
  } while (0)

#define MDQ_FAIL(message) MDQ_CHECK(false, message)

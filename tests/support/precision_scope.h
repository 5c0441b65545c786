// Sets the compute precision (engine/precision.h) for one scope and restores the previous one.
#pragma once
#include "engine/precision.h"

namespace mdq::testing {

struct PrecisionScope {
  Precision saved = precision();
  explicit PrecisionScope(Precision p) { set_precision(p); }
  ~PrecisionScope() { set_precision(saved); }
  PrecisionScope(const PrecisionScope&) = delete;
  PrecisionScope& operator=(const PrecisionScope&) = delete;
};

}  // namespace mdq::testing

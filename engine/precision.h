// The current compute precision for the float GEMMs and convolutions (the values:
// common/precision.h). Ops read it when they hand work to cuBLAS/cuDNN.
#pragma once
#include <string>

#include "common/precision.h"

namespace mdq {

void set_precision(Precision p);
Precision precision();
Precision parse_precision(const std::string& name);  // "fp32" | "tf32" | "bf16", else throws
const char* precision_name(Precision p);

}  // namespace mdq

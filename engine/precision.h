// Compute precision for the float GEMMs and convolutions (DESIGN.md §2: fp32 master state
// always; compute in fp32, tf32 or bf16 by flag). Ops read it when they call cuBLAS/cuDNN.
#pragma once
#include <string>

namespace mdq {

enum class Precision { FP32, TF32, BF16 };

void set_precision(Precision p);
Precision precision();
Precision parse_precision(const std::string& name);  // "fp32" | "tf32" | "bf16", else throws
const char* precision_name(Precision p);

}  // namespace mdq

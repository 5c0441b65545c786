// The compute precisions of the float GEMMs and convolutions (DESIGN.md §2: fp32 master state
// always; compute in fp32, tf32 or bf16 by flag). The engine keeps the current one
// (engine/precision.h) and hands it to the CUDA backend's cuBLAS/cuDNN calls with each op.
#pragma once

namespace mdq {

enum class Precision { FP32, TF32, BF16 };

}  // namespace mdq

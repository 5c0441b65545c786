#include "engine/precision.h"

#include "common/error.h"

namespace mdq {
namespace {
Precision g_precision = Precision::FP32;
}

void set_precision(Precision p) { g_precision = p; }
Precision precision() { return g_precision; }

Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::FP32;
  if (name == "tf32") return Precision::TF32;
  if (name == "bf16") return Precision::BF16;
  MDQ_FAIL("unknown precision '" << name << "': use fp32, tf32 or bf16");
}

const char* precision_name(Precision p) {
  return p == Precision::FP32 ? "fp32" : p == Precision::TF32 ? "tf32" : "bf16";
}

}  // namespace mdq

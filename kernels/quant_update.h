// Launcher of the fused quantizer step (kernels/quant_update.cu): E6–E9 with the E8 direction
// in one pass. Pointers are device pointers; work is queued on mdq::cuda::stream().
// CPU reference: engine/quant/update.cpp (same per-element math, kernels/quant_math.h).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/quant_math.h"

namespace mdq::kernels {

// One step of n weights. Tanh family: stored, m, v hold n floats. Softmax family: stored, m, v
// hold levels planes of n floats (plane λ at λ·n). m is read only when uses_m(dir), v only when
// uses_v(dir); they may be null otherwise. primal (n floats) is written, never read, and may
// alias stored for the rules whose stored variable is the primal (Float, MdTanh).
// float4 accesses when every pointer is 16-byte aligned (and, for softmax planes, n % 4 == 0).
void quant_step(quant::Rule rule, quant::Dir dir, int levels, const quant::StepArgs& args, float* stored,
                const float* grad, float* m, float* v, float* primal, int64_t n);

// ---- the multi-tensor step: many tensors of one (rule, dir, levels) and one StepArgs in one
// launch, each weight computed exactly as quant_step computes it (the same device functions, the
// same float4 rule per tensor), so the results are bit-identical.
//
// A device table describes the tensors: first one QuantStepTensor per tensor (its arrays, as
// quant_step takes them, but the grad), then one QuantStepWork per chunk of kQuantChunk weights;
// each work item is stepped by one block. Grads are not in the table but travel as kernel
// arguments: backward allocates them anew every step, while the rest stays where it is for a
// whole run, so the table is built once (engine/quant/update.cpp caches it) and a step uploads
// nothing.
struct QuantStepTensor {
  float* stored;  // quant_step's stored, m, v, primal and n
  float* m;
  float* v;
  float* primal;
  int64_t n;
  bool operator==(const QuantStepTensor& o) const {
    return stored == o.stored && m == o.m && v == o.v && primal == o.primal && n == o.n;
  }
};
struct QuantStepWork {
  int32_t tensor;  // index into the table's tensors
  int32_t chunk;   // weights [chunk·kQuantChunk, min((chunk + 1)·kQuantChunk, n))
};
// A multiple of 4, so that a float4 group never straddles two chunks.
constexpr int64_t kQuantChunk = 4096;
// Tensors per launch: their grad pointers take 2 KiB of the 4 KiB of kernel arguments.
constexpr int kQuantMultiMax = 256;

inline int64_t quant_step_work_items(const QuantStepTensor* tensors, int count) {
  int64_t w = 0;
  for (int i = 0; i < count; ++i) w += (tensors[i].n + kQuantChunk - 1) / kQuantChunk;
  return w;
}
inline size_t quant_step_table_bytes(int count, int64_t work) {
  return static_cast<size_t>(count) * sizeof(QuantStepTensor) + static_cast<size_t>(work) * sizeof(QuantStepWork);
}
// Writes the table's host image, quant_step_table_bytes(count, quant_step_work_items(...)) bytes.
inline void quant_step_table_fill(const QuantStepTensor* tensors, int count, void* out) {
  std::memcpy(out, tensors, static_cast<size_t>(count) * sizeof(QuantStepTensor));
  auto* work = reinterpret_cast<QuantStepWork*>(static_cast<char*>(out) + count * sizeof(QuantStepTensor));
  for (int i = 0; i < count; ++i)
    for (int64_t c = 0; c * kQuantChunk < tensors[i].n; ++c) *work++ = QuantStepWork{i, static_cast<int32_t>(c)};
}

// One step of `count` ≤ kQuantMultiMax tensors with `work` work items. table: the device copy of
// quant_step_table_fill's image of these tensors; grads[i] (a host array of device pointers) is
// tensor i's grad, with the shape of its primal.
void quant_step_multi(quant::Rule rule, quant::Dir dir, int levels, const quant::StepArgs& args, const void* table,
                      int count, int64_t work, const float* const* grads);

}  // namespace mdq::kernels

// Many copies within one device's memory as one op (the data-parallel gradient buckets: every
// parameter's grad into its bucket and back). CPU: memcpy per span; GPU: one launch per
// kernels::kCopySpansMax spans (kernels/copy_spans.cu), queued on the engine's stream like any op.
#pragma once
#include <vector>

#include "engine/dtype.h"
#include "kernels/copy_spans.h"

namespace mdq::ops {

using kernels::CopySpan;

// Every span's pointers must be 4-byte aligned and its bytes a multiple of 4 (f32 and i32 data);
// spans must not overlap one another.
void copy_spans(Device device, const std::vector<CopySpan>& spans);

}  // namespace mdq::ops

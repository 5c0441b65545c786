// What the per-element optimizer math headers (adam_math.h, sgd_math.h) share: the
// host/device qualifier, and L2 weight decay as PyTorch's SGD and Adam apply it.
#pragma once

#ifndef MDQ_HD
#ifdef __CUDACC__
#define MDQ_HD __host__ __device__
#else
#define MDQ_HD
#endif
#endif

namespace mdq {

// Weight decay is added to the gradient (L2 regularisation), not applied to the weight
// (that would be AdamW); the caller's gradient tensor is left as it was.
MDQ_HD inline float l2_decayed(float g, float w, float weight_decay) { return g + weight_decay * w; }

}  // namespace mdq

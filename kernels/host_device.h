// MDQ_HD marks the per-element math that both backends evaluate from one source
// (kernels/quant_math.h, the optimizer math): __host__ __device__ and force-inlined under nvcc,
// a plain inline function for the host compiler. MDQ_UNROLL unrolls a loop in device code
// only (the host compiler would warn about an unknown pragma). Plain C++: the engine's CPU
// references include the math headers in builds without CUDA.
#pragma once

#if defined(__CUDACC__)
#define MDQ_HD __host__ __device__ __forceinline__
#else
#define MDQ_HD inline
#endif

#if defined(__CUDA_ARCH__)
#define MDQ_UNROLL _Pragma("unroll")
#else
#define MDQ_UNROLL
#endif

// Backend dispatch: the one place that knows which backends this build has. Every op in
// engine/ holds its checks, its CPU reference and one dispatch call:
//
//   dispatch("relu", x.device(), relu_cpu, &CudaBackend::activation_forward_f32)(act, px, py, n);
//
// A CPU tensor always runs the CPU reference; a CUDA tensor runs the function the CUDA backend
// registered in that slot of its table (kernels/backend.h), or raises an mdq::Error naming the
// op when there is none. Cost: one indirect call per op.
#pragma once
#include "common/error.h"
#include "engine/dtype.h"
#include "kernels/backend.h"

namespace mdq::backend {

using kernels::CudaBackend;

// The CUDA backend's table, filled once on first use; every slot is null in a build without
// CUDA (registry.cpp holds the build's only backend #ifdef).
const CudaBackend& cuda();
bool has_cuda();  // whether this build has a CUDA backend at all

[[noreturn]] void throw_not_registered(const char* op);

// The CUDA implementation in `slot`, or an Error naming `op` when none is registered.
template <class Fn>
Fn cuda_impl(const char* op, Fn CudaBackend::*slot) {
  Fn fn = cuda().*slot;
  if (!fn) throw_not_registered(op);
  return fn;
}

// The implementation of `op` for `device`: the CPU reference `cpu`, or the CUDA one in `slot`
// (both take the same arguments).
template <class Fn>
Fn dispatch(const char* op, Device device, Fn cpu, Fn CudaBackend::*slot) {
  return device == Device::CPU ? cpu : cuda_impl(op, slot);
}

}  // namespace mdq::backend

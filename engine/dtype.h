// Element types and devices a Tensor can have.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace mdq {

enum class DType : uint8_t { F32, BF16, F16, I32, U8, U32, I16 };  // new codes at the end: checkpoints store them
enum class Device : uint8_t { CPU, CUDA };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
const char* device_name(Device d);

}  // namespace mdq

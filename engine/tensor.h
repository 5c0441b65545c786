// Tensor: a shape, a dtype, a device and a reference-counted Storage. Always contiguous
// (row-major); reshape shares the storage, everything else that changes layout copies.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/dtype.h"
#include "common/error.h"
#include "engine/storage.h"

namespace mdq {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "[2, 3, 4]"
int64_t shape_numel(const Shape& s);

class Tensor {
 public:
  Tensor() = default;  // undefined tensor: defined() is false

  // ---- creation
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  static Tensor full(const Shape& shape, float value, Device device = Device::CPU);  // f32
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape, Device device = Device::CPU);
  static Tensor from_vector_i32(const std::vector<int32_t>& values, const Shape& shape, Device device = Device::CPU);
  // Seeded random f32 tensors: element i depends only on (seed, i), so the same seed gives the
  // same values on the CPU and the GPU (generated on the host by a counter-based generator).
  static Tensor uniform(const Shape& shape, float lo, float hi, uint64_t seed, Device device = Device::CPU);
  static Tensor normal(const Shape& shape, float mean, float stddev, uint64_t seed, Device device = Device::CPU);

  // ---- what it is
  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const;  // negative i counts from the end
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  bool is_cuda() const { return device_ == Device::CUDA; }
  std::string describe() const;  // "f32[2, 3]@cuda"

  // ---- raw access (checks the dtype)
  void* raw() const { return storage_ ? storage_->data() : nullptr; }
  template <class T> T* data() const;

  // ---- copies and views
  Tensor to(Device device) const;  // same tensor when already there
  Tensor cpu() const { return to(Device::CPU); }
  Tensor cuda() const { return to(Device::CUDA); }
  Tensor clone() const;
  // True when no other Tensor shares this one's storage (a fresh op result): then it may be
  // taken over instead of copied.
  bool sole_owner() const { return storage_ && storage_.use_count() == 1; }
  Tensor reshape(const Shape& shape) const;  // shares storage; one dim may be -1
  // Elements [offset, offset + numel(shape)) of this tensor as a tensor of that shape, sharing
  // its storage (a data-parallel gradient that lives in its bucket).
  Tensor window(int64_t offset, const Shape& shape) const;
  void copy_from(const Tensor& src);         // same shape and dtype; any devices
  void fill_(float value);                   // f32 only
  void zero_();                              // any dtype
  std::vector<float> to_vector() const;      // f32, from any device
  std::vector<int32_t> to_vector_i32() const;
  float item() const;                        // a one-element f32 tensor's value

 private:
  std::shared_ptr<Storage> storage_;
  Shape shape_;
  DType dtype_ = DType::F32;
  Device device_ = Device::CPU;
};

template <class T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::F32; };
template <> struct DTypeOf<int32_t> { static constexpr DType value = DType::I32; };
template <> struct DTypeOf<int16_t> { static constexpr DType value = DType::I16; };
template <> struct DTypeOf<uint8_t> { static constexpr DType value = DType::U8; };
template <> struct DTypeOf<uint32_t> { static constexpr DType value = DType::U32; };
template <> struct DTypeOf<uint16_t> { static constexpr DType value = DType::BF16; };  // bf16/f16 bits

template <class T> T* Tensor::data() const {
  MDQ_CHECK(dtype_size(dtype_) == sizeof(T) &&
                (dtype_ == DTypeOf<T>::value || (sizeof(T) == 2 && dtype_size(dtype_) == 2)),
            "Tensor::data: tensor " << describe() << " read as the wrong element type");
  return static_cast<T*>(raw());
}

// Checks used by every op; messages name the op and both operands.
void check_same_shape(const char* op, const Tensor& a, const Tensor& b);
void check_same_device(const char* op, const Tensor& a, const Tensor& b);
void check_dtype(const char* op, const Tensor& t, DType expected);
void check_ndim(const char* op, const Tensor& t, int ndim);

}  // namespace mdq

#include "engine/tensor.h"

#include <cmath>
#include <cstring>
#include <sstream>

#include "engine/backend/registry.h"
#include "engine/random.h"

namespace mdq {

std::string shape_str(const Shape& s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << "]";
  return o.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) MDQ_CHECK(d >= 0, "Tensor::empty: negative dimension in shape " << shape_str(shape));
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.device_ = device;
  t.storage_ = std::make_shared<Storage>(static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype), device);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero_();
  return t;
}

Tensor Tensor::full(const Shape& shape, float value, Device device) {
  Tensor t = empty(shape, DType::F32, device);
  t.fill_(value);
  return t;
}

static Tensor from_host(const void* src, size_t bytes, const Shape& shape, DType dtype, Device device) {
  Tensor host = Tensor::empty(shape, dtype, Device::CPU);
  MDQ_CHECK(host.nbytes() == bytes, "Tensor::from_vector: " << bytes / dtype_size(dtype)
                                        << " values do not fill shape " << shape_str(shape));
  if (bytes) std::memcpy(host.raw(), src, bytes);
  return host.to(device);
}

Tensor Tensor::from_vector(const std::vector<float>& v, const Shape& shape, Device device) {
  return from_host(v.data(), v.size() * sizeof(float), shape, DType::F32, device);
}

Tensor Tensor::from_vector_i32(const std::vector<int32_t>& v, const Shape& shape, Device device) {
  return from_host(v.data(), v.size() * sizeof(int32_t), shape, DType::I32, device);
}

Tensor Tensor::uniform(const Shape& shape, float lo, float hi, uint64_t seed, Device device) {
  Tensor t = empty(shape, DType::F32, Device::CPU);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = lo + (hi - lo) * uniform01(seed, static_cast<uint64_t>(i));
  return t.to(device);
}

Tensor Tensor::normal(const Shape& shape, float mean, float stddev, uint64_t seed, Device device) {
  Tensor t = empty(shape, DType::F32, Device::CPU);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {  // Box-Muller on two counter-indexed uniforms
    float u1 = uniform01(seed, 2 * static_cast<uint64_t>(i)) + 1e-7f;
    float u2 = uniform01(seed, 2 * static_cast<uint64_t>(i) + 1);
    p[i] = mean + stddev * std::sqrt(-2.0f * std::log(u1)) * std::cos(6.28318530718f * u2);
  }
  return t.to(device);
}

int64_t Tensor::dim(int i) const {
  int n = ndim();
  int j = i < 0 ? i + n : i;
  MDQ_CHECK(j >= 0 && j < n, "Tensor::dim(" << i << ") out of range for " << describe());
  return shape_[static_cast<size_t>(j)];
}

std::string Tensor::describe() const {
  if (!defined()) return "<undefined tensor>";
  return std::string(dtype_name(dtype_)) + shape_str(shape_) + "@" + device_name(device_);
}

Tensor Tensor::to(Device device) const {
  MDQ_CHECK(defined(), "Tensor::to: undefined tensor");
  if (device == device_) return *this;
  Tensor out = empty(shape_, dtype_, device);
  out.copy_from(*this);
  return out;
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape_, dtype_, device_);
  out.copy_from(*this);
  return out;
}

Tensor Tensor::reshape(const Shape& shape) const {
  Shape s = shape;
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      MDQ_CHECK(infer < 0, "reshape: more than one -1 in " << shape_str(shape));
      infer = static_cast<int>(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0 && known > 0) s[static_cast<size_t>(infer)] = numel() / known;
  MDQ_CHECK(shape_numel(s) == numel(), "reshape: cannot view " << describe() << " as " << shape_str(shape));
  Tensor t = *this;
  t.shape_ = s;
  return t;
}

Tensor Tensor::window(int64_t offset, const Shape& shape) const {
  MDQ_CHECK(defined(), "window: undefined tensor");
  const int64_t n = shape_numel(shape);
  MDQ_CHECK(offset >= 0 && n >= 0 && offset + n <= numel(),
            "window: elements [" << offset << ", " << offset + n << ") outside " << describe());
  Tensor t;
  const size_t elt = dtype_size(dtype_);
  t.storage_ = std::make_shared<Storage>(storage_, static_cast<size_t>(offset) * elt, static_cast<size_t>(n) * elt);
  t.shape_ = shape;
  t.dtype_ = dtype_;
  t.device_ = device_;
  return t;
}

void Tensor::copy_from(const Tensor& src) {
  MDQ_CHECK(defined() && src.defined(), "copy_from: undefined tensor");
  MDQ_CHECK(src.numel() == numel() && src.dtype_ == dtype_,
            "copy_from: source " << src.describe() << " does not match destination " << describe());
  if (nbytes() == 0) return;
  if (device_ == Device::CPU && src.device_ == Device::CPU) {
    std::memcpy(raw(), src.raw(), nbytes());
    return;
  }
  using kernels::CopyKind;
  const CopyKind kind = src.device_ == Device::CPU ? CopyKind::HostToDevice
                        : device_ == Device::CPU   ? CopyKind::DeviceToHost
                                                   : CopyKind::DeviceToDevice;
  backend::cuda_impl("copy_from", &backend::CudaBackend::copy)(raw(), src.raw(), nbytes(), kind);
}

namespace {
void fill_cpu(float* out, int64_t n, float value) {
  for (int64_t i = 0; i < n; ++i) out[i] = value;
}
void zero_cpu(void* p, size_t bytes) { std::memset(p, 0, bytes); }
}  // namespace

void Tensor::fill_(float value) {
  check_dtype("fill_", *this, DType::F32);
  backend::dispatch("fill_", device_, fill_cpu, &backend::CudaBackend::fill_f32)(data<float>(), numel(), value);
}

void Tensor::zero_() {
  if (nbytes() == 0) return;
  backend::dispatch("zero_", device_, zero_cpu, &backend::CudaBackend::zero)(raw(), nbytes());
}

std::vector<float> Tensor::to_vector() const {
  check_dtype("to_vector", *this, DType::F32);
  Tensor h = cpu();
  const float* p = h.data<float>();
  return std::vector<float>(p, p + numel());
}

std::vector<int32_t> Tensor::to_vector_i32() const {
  check_dtype("to_vector_i32", *this, DType::I32);
  Tensor h = cpu();
  const int32_t* p = h.data<int32_t>();
  return std::vector<int32_t>(p, p + numel());
}

float Tensor::item() const {
  MDQ_CHECK(numel() == 1, "item: tensor " << describe() << " has " << numel() << " elements, not 1");
  return to_vector()[0];
}

void check_same_shape(const char* op, const Tensor& a, const Tensor& b) {
  MDQ_CHECK(a.shape() == b.shape(), op << ": shapes differ: " << a.describe() << " vs " << b.describe());
}
void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  MDQ_CHECK(a.device() == b.device(),
            op << ": operands on different devices: " << a.describe() << " vs " << b.describe());
}
void check_dtype(const char* op, const Tensor& t, DType expected) {
  MDQ_CHECK(t.defined(), op << ": undefined tensor");
  MDQ_CHECK(t.dtype() == expected, op << ": expected " << dtype_name(expected) << ", got " << t.describe());
}
void check_ndim(const char* op, const Tensor& t, int ndim) {
  MDQ_CHECK(t.ndim() == ndim, op << ": expected a " << ndim << "-d tensor, got " << t.describe());
}

}  // namespace mdq

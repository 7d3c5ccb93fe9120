// Array: a small owning, contiguous, row-major n-d array on one device.
//
// It is the engine's carrier for coordinates, features, weights, relation
// arrays and device-side scalars -- not a general tensor library. An Array
// shares its buffer on copy (like a shared_ptr); `clone()` deep-copies.
// Views (`reshape`, `rows`) share the buffer too. Element access from the host
// (`data<T>()`) is only allowed for CPU arrays; moving data between devices is
// explicit (`to(device)`).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "lattice/core/device.hpp"
#include "lattice/core/dtype.hpp"
#include "lattice/core/error.hpp"

namespace lattice {

// Up to kMaxDims extents, stored inline.
class Shape {
 public:
  static constexpr int k_max_dims = 6;

  Shape() = default;
  Shape(std::initializer_list<std::int64_t> dims);
  explicit Shape(std::span<const std::int64_t> dims);

  int ndim() const { return ndim_; }
  std::int64_t operator[](int i) const { return dims_[static_cast<std::size_t>(i)]; }
  std::int64_t& operator[](int i) { return dims_[static_cast<std::size_t>(i)]; }
  std::int64_t numel() const;
  std::span<const std::int64_t> dims() const { return {dims_.data(), static_cast<std::size_t>(ndim_)}; }
  std::string str() const;  // "(3, 4)"
  friend bool operator==(const Shape& a, const Shape& b) { return std::ranges::equal(a.dims(), b.dims()); }

 private:
  std::array<std::int64_t, k_max_dims> dims_{};
  int ndim_ = 0;
};

// A device allocation. Freed through the allocator that made it when the last
// Array referencing it goes away; CUDA memory is freed in stream order on the
// stream that was current when it was allocated.
class Buffer {
 public:
  using Deleter = void (*)(void* ptr, std::size_t bytes, Device device, void* stream);
  Buffer(void* ptr, std::size_t bytes, Device device, Deleter deleter, void* stream = nullptr)
      : ptr_(ptr), bytes_(bytes), device_(device), deleter_(deleter), stream_(stream) {}
  // Memory lattice does not own (e.g. a NumPy or PyTorch array): nothing is
  // freed here; `owner` (a keep-alive handle of the real owner) is released
  // when the last Array referencing the buffer goes away.
  Buffer(void* ptr, std::size_t bytes, Device device, std::shared_ptr<void> owner)
      : ptr_(ptr), bytes_(bytes), device_(device), deleter_(nullptr), stream_(nullptr), owner_(std::move(owner)) {}
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return ptr_; }
  std::size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* ptr_;
  std::size_t bytes_;
  Device device_;
  Deleter deleter_;
  void* stream_;
  std::shared_ptr<void> owner_;  // external memory only
};

// Allocates `bytes` on `device` (64-byte aligned on the host; the CUDA backend
// uses its caching allocator). Zero bytes gives a valid empty buffer.
std::shared_ptr<Buffer> allocate(std::size_t bytes, Device device);

class Array {
 public:
  Array() = default;  // undefined: defined() is false

  static Array empty(const Shape& shape, DType dtype, Device device = default_device());
  static Array zeros(const Shape& shape, DType dtype, Device device = default_device());
  // Every element set to `value` (converted to dtype).
  static Array full(const Shape& shape, DType dtype, double value, Device device = default_device());
  // Copies host data into a new array on `device`.
  template <class T>
  static Array from_vector(const std::vector<T>& values, const Shape& shape, Device device = default_device());
  // Wraps external, contiguous row-major memory without copying. `owner`
  // keeps that memory alive and is released with the last Array sharing the
  // buffer. The caller guarantees the memory is not freed or resized while
  // owned and holds numel * itemsize(dtype) bytes on `device`. `data` may be
  // null only when the shape has no elements; it must be aligned to the
  // element size.
  static Array from_external(void* data, const Shape& shape, DType dtype, Device device, std::shared_ptr<void> owner);
  template <class T>
  static Array scalar(T value, Device device = default_device()) {
    return from_vector(std::vector<T>{value}, Shape{}, device);
  }

  bool defined() const { return buffer_ != nullptr; }
  DType dtype() const { return dtype_; }
  Device device() const { return buffer_ ? buffer_->device() : Device::cpu(); }
  const Shape& shape() const { return shape_; }
  int ndim() const { return shape_.ndim(); }
  std::int64_t dim(int i) const { return shape_[i < 0 ? i + shape_.ndim() : i]; }
  std::int64_t numel() const { return shape_.numel(); }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * itemsize(dtype_); }
  // Bytes per leading-dimension row.
  std::size_t row_bytes() const;

  // Raw pointer to the first element (any device).
  void* raw() const;
  // Typed host pointer; throws unless the dtype matches and the array is on the CPU.
  template <class T>
  T* data() const;
  // Same, without the device check (for backends that pass device pointers).
  template <class T>
  T* device_data() const;

  // Same buffer, new shape with the same element count.
  Array reshape(const Shape& shape) const;
  // Rows [begin, end) of the leading dimension; shares the buffer.
  Array rows(std::int64_t begin, std::int64_t end) const;
  // Deep copy on the same device / onto another device (same-device `to` is a no-op share).
  Array clone() const;
  Array to(Device device) const;
  // Element type conversion (always a new array).
  Array astype(DType dtype) const;
  // Host copy of the elements as T (dtype must match).
  template <class T>
  std::vector<T> to_vector() const;
  // Reads a one-element integer array (e.g. an active-row scalar) to the host.
  // A host-facing call: on CUDA it synchronizes.
  std::int64_t item_int() const;
  double item_double() const;
  const std::shared_ptr<Buffer>& buffer() const { return buffer_; }
  std::size_t offset_bytes() const { return offset_; }
  bool shares_buffer_with(const Array& other) const { return buffer_ == other.buffer_; }
  std::string describe() const;  // "float32(3, 4) on cpu"

 private:
  Array(std::shared_ptr<Buffer> buffer, std::size_t offset, Shape shape, DType dtype)
      : buffer_(std::move(buffer)), offset_(offset), shape_(shape), dtype_(dtype) {}
  void check_host_access(DType expected) const;

  std::shared_ptr<Buffer> buffer_;
  std::size_t offset_ = 0;
  Shape shape_;
  DType dtype_ = DType::f32;
};

// Copies `bytes` between two (possibly different-device) addresses.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, std::size_t bytes);

template <class T>
T* Array::data() const {
  check_host_access(dtype_of_v<T>);
  return static_cast<T*>(raw());
}

template <class T>
T* Array::device_data() const {
  if (dtype_of_v<T> != dtype_) {
    throw TypeError(detail::concat("[Array] element type ", dtype_name(dtype_of_v<T>), " requested from an array of ",
                                   dtype_name(dtype_)));
  }
  return static_cast<T*>(raw());
}

template <class T>
Array Array::from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  if (static_cast<std::int64_t>(values.size()) != shape.numel()) {
    throw ValueError(detail::concat("[Array::from_vector] argument 'values': ", values.size(),
                                    " values do not fill shape ", shape.str()));
  }
  Array out = empty(shape, dtype_of_v<T>, device);
  copy_bytes(out.raw(), device, values.data(), Device::cpu(), values.size() * sizeof(T));
  return out;
}

template <class T>
std::vector<T> Array::to_vector() const {
  if (dtype_of_v<T> != dtype_) {
    throw TypeError(detail::concat("[Array::to_vector] element type ", dtype_name(dtype_of_v<T>),
                                   " requested from an array of ", dtype_name(dtype_)));
  }
  std::vector<T> out(static_cast<std::size_t>(numel()));
  copy_bytes(out.data(), Device::cpu(), raw(), device(), nbytes());
  return out;
}

}  // namespace lattice

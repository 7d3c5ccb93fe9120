#include "lattice/core/array.hpp"

#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>

#include "backend/cpu/api.hpp"
#include "backend/cuda/api.hpp"

namespace lattice {

Shape::Shape(std::initializer_list<std::int64_t> dims)
    : Shape(std::span<const std::int64_t>(dims.begin(), dims.size())) {}

Shape::Shape(std::span<const std::int64_t> dims) {
  if (dims.size() > static_cast<std::size_t>(k_max_dims)) {
    throw ValueError(detail::concat("[Shape] ", dims.size(), " dimensions exceed the maximum of ", k_max_dims));
  }
  for (std::size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] < 0) throw ValueError(detail::concat("[Shape] negative extent ", dims[i], " in dimension ", i));
    dims_[i] = dims[i];
  }
  ndim_ = static_cast<int>(dims.size());
}

std::int64_t Shape::numel() const {
  std::int64_t n = 1;
  for (int i = 0; i < ndim_; ++i) n *= dims_[static_cast<std::size_t>(i)];
  return n;
}

std::string Shape::str() const {
  std::ostringstream os;
  os << "(";
  for (int i = 0; i < ndim_; ++i) os << (i ? ", " : "") << dims_[static_cast<std::size_t>(i)];
  if (ndim_ == 1) os << ",";
  os << ")";
  return os.str();
}

Buffer::~Buffer() {
  if (deleter_ != nullptr && ptr_ != nullptr) deleter_(ptr_, bytes_, device_, stream_);
}

namespace {

void free_host(void* ptr, std::size_t /*bytes*/, Device /*device*/, void* /*stream*/) { std::free(ptr); }

void free_cuda(void* ptr, std::size_t /*bytes*/, Device device, void* stream) {
  cuda::deallocate(ptr, device.index, stream);
}

}  // namespace

std::shared_ptr<Buffer> allocate(std::size_t bytes, Device device) {
  if (device.is_cpu()) {
    // 64-byte alignment suits AVX-512 loads; round the size up as aligned_alloc requires.
    const std::size_t rounded = ((bytes + 63) / 64) * 64;
    void* ptr = rounded == 0 ? nullptr : std::aligned_alloc(64, rounded);
    if (rounded != 0 && ptr == nullptr) throw std::bad_alloc();
    return std::make_shared<Buffer>(ptr, bytes, device, &free_host);
  }
  if (bytes == 0) return std::make_shared<Buffer>(nullptr, 0, device, &free_cuda, nullptr);
  void* stream = cuda::current_stream(device.index);
  void* ptr = cuda::allocate(bytes, device.index, stream);
  return std::make_shared<Buffer>(ptr, bytes, device, &free_cuda, stream);
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, std::size_t bytes) {
  if (bytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
  cuda::copy(dst, dst_device, src, src_device, bytes);
}

Array Array::empty(const Shape& shape, DType dtype, Device device) {
  const std::size_t bytes = static_cast<std::size_t>(shape.numel()) * itemsize(dtype);
  return Array(allocate(bytes, device), 0, shape, dtype);
}

Array Array::from_external(void* data, const Shape& shape, DType dtype, Device device, std::shared_ptr<void> owner) {
  const std::size_t bytes = static_cast<std::size_t>(shape.numel()) * itemsize(dtype);
  check(data != nullptr || bytes == 0, "Array::from_external", "data", "null pointer for ", shape.str(), " elements");
  check(reinterpret_cast<std::uintptr_t>(data) % itemsize(dtype) == 0, "Array::from_external", "data",
        "address is not aligned to the ", itemsize(dtype), "-byte ", dtype_name(dtype), " element");
  return Array(std::make_shared<Buffer>(data, bytes, device, std::move(owner)), 0, shape, dtype);
}

Array Array::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, dtype, 0.0, device); }

Array Array::full(const Shape& shape, DType dtype, double value, Device device) {
  Array out = empty(shape, dtype, device);
  if (device.is_cpu()) {
    cpu::fill(out, value);
  } else {
    cuda::fill(out, value);
  }
  return out;
}

std::size_t Array::row_bytes() const {
  if (ndim() == 0) return itemsize(dtype_);
  std::size_t n = itemsize(dtype_);
  for (int i = 1; i < ndim(); ++i) n *= static_cast<std::size_t>(shape_[i]);
  return n;
}

void* Array::raw() const {
  if (!buffer_) return nullptr;
  return static_cast<char*>(buffer_->data()) + offset_;
}

void Array::check_host_access(DType expected) const {
  if (!defined()) throw ValueError("[Array] access to an undefined array");
  if (expected != dtype_) {
    throw TypeError(detail::concat("[Array] element type ", dtype_name(expected), " requested from an array of ",
                                   dtype_name(dtype_)));
  }
  if (!device().is_cpu()) {
    throw DeviceError(detail::concat("[Array] host access to an array on ", device().str(),
                                     "; copy it with to(Device::cpu()) first"));
  }
}

Array Array::reshape(const Shape& shape) const {
  if (shape.numel() != numel()) {
    throw ValueError(detail::concat("[Array::reshape] argument 'shape': ", shape.str(), " does not hold the ", numel(),
                                    " elements of ", shape_.str()));
  }
  return Array(buffer_, offset_, shape, dtype_);
}

Array Array::rows(std::int64_t begin, std::int64_t end) const {
  if (ndim() == 0 || begin < 0 || end < begin || end > shape_[0]) {
    throw ValueError(detail::concat("[Array::rows] range [", begin, ", ", end, ") is outside ", shape_.str()));
  }
  Shape s = shape_;
  s[0] = end - begin;
  return Array(buffer_, offset_ + static_cast<std::size_t>(begin) * row_bytes(), s, dtype_);
}

Array Array::clone() const {
  Array out = empty(shape_, dtype_, device());
  copy_bytes(out.raw(), device(), raw(), device(), nbytes());
  return out;
}

Array Array::to(Device target) const {
  if (target == device()) return *this;
  Array out = empty(shape_, dtype_, target);
  copy_bytes(out.raw(), target, raw(), device(), nbytes());
  return out;
}

Array Array::astype(DType dtype) const {
  Array out = empty(shape_, dtype, device());
  if (device().is_cpu()) {
    cpu::astype(*this, out);
  } else {
    cuda::astype(*this, out);
  }
  return out;
}

std::int64_t Array::item_int() const {
  if (numel() != 1)
    throw ValueError(detail::concat("[Array::item_int] array of shape ", shape_.str(), " is not one element"));
  switch (dtype_) {
    case DType::i32:
      return to_vector<std::int32_t>()[0];
    case DType::i64:
      return to_vector<std::int64_t>()[0];
    case DType::u32:
      return to_vector<std::uint32_t>()[0];
    case DType::u8:
      return to_vector<std::uint8_t>()[0];
    default:
      throw TypeError(detail::concat("[Array::item_int] array of ", dtype_name(dtype_), " is not an integer"));
  }
}

double Array::item_double() const {
  if (numel() != 1)
    throw ValueError(detail::concat("[Array::item_double] array of shape ", shape_.str(), " is not one element"));
  return astype(DType::f64).to_vector<double>()[0];
}

std::string Array::describe() const {
  if (!defined()) return "undefined array";
  return detail::concat(dtype_name(dtype_), shape_.str(), " on ", device().str());
}

}  // namespace lattice

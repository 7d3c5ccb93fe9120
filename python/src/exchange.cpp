// Zero-copy array exchange between lattice::Array and DLPack producers.
#include <cstdint>
#include <iterator>
#include <memory>

#include "bindings.hpp"
#include "lattice/core/error.hpp"
#include "lattice/core/stream.hpp"

namespace lattice::python {

namespace {

DType dtype_from_dlpack(nb::dlpack::dtype t, const char* op, const char* arg) {
  using Code = nb::dlpack::dtype_code;
  const auto code = static_cast<Code>(t.code);
  if (t.lanes == 1) {
    if (code == Code::Float && t.bits == 16) return DType::f16;
    if (code == Code::Float && t.bits == 32) return DType::f32;
    if (code == Code::Float && t.bits == 64) return DType::f64;
    if (code == Code::Bfloat && t.bits == 16) return DType::bf16;
    if (code == Code::Int && t.bits == 32) return DType::i32;
    if (code == Code::Int && t.bits == 64) return DType::i64;
    if (code == Code::UInt && t.bits == 8) return DType::u8;
    if (code == Code::UInt && t.bits == 32) return DType::u32;
  }
  constexpr const char* k_kinds[] = {"int", "uint", "float", "opaque", "bfloat", "complex", "bool"};
  const char* kind = t.code < std::size(k_kinds) ? k_kinds[t.code] : "unknown";
  fail<TypeError>(op, arg, "unsupported element type ", kind, int{t.bits}, t.lanes != 1 ? " (vector lanes)" : "",
                  "; lattice takes float16, bfloat16, float32, float64, int32, int64, uint8 or uint32");
}

nb::dlpack::dtype dlpack_from_dtype(DType t) {
  switch (t) {
    case DType::f16:
      return {static_cast<std::uint8_t>(nb::dlpack::dtype_code::Float), 16, 1};
    case DType::bf16:
      return {static_cast<std::uint8_t>(nb::dlpack::dtype_code::Bfloat), 16, 1};
    case DType::f32:
      return nb::dtype<float>();
    case DType::f64:
      return nb::dtype<double>();
    case DType::i32:
      return nb::dtype<std::int32_t>();
    case DType::i64:
      return nb::dtype<std::int64_t>();
    case DType::u8:
      return nb::dtype<std::uint8_t>();
    case DType::u32:
      return nb::dtype<std::uint32_t>();
  }
  return nb::dtype<float>();
}

// Releases the Python-side producer with the GIL held. At interpreter exit
// (e.g. a cached relation destroyed with the process-wide manager after
// finalization) the reference is leaked instead: Python is gone.
struct KeepAliveDeleter {
  void operator()(InArray* held) const {
    if (!Py_IsInitialized()) return;
    nb::gil_scoped_acquire gil;
    delete held;
  }
};

// torch._C._from_dlpack, looked up once and leaked (lives as long as torch).
nb::handle torch_from_dlpack() {
  static PyObject* fn = nb::object(nb::module_::import_("torch._C").attr("_from_dlpack")).release().ptr();
  return fn;
}

}  // namespace

Array import_array(const InArray& in, const char* op, const char* arg) {
  const DType dtype = dtype_from_dlpack(in.dtype(), op, arg);
  check(in.ndim() <= static_cast<std::size_t>(Shape::k_max_dims), op, arg, in.ndim(),
        " dimensions exceed the maximum of ", Shape::k_max_dims);
  std::array<std::int64_t, Shape::k_max_dims> dims{};
  for (std::size_t i = 0; i < in.ndim(); ++i) dims[i] = static_cast<std::int64_t>(in.shape(i));
  const Shape shape(std::span<const std::int64_t>(dims.data(), in.ndim()));
  Device device = Device::cpu();
  if (in.device_type() == nb::device::cuda::value) {
    device = Device::cuda(in.device_id());
  } else if (in.device_type() != nb::device::cpu::value) {
    fail<DeviceError>(op, arg, "arrays on DLPack device type ", in.device_type(),
                      " are not supported (cpu or cuda only)");
  }
  check(reinterpret_cast<std::uintptr_t>(in.data()) % itemsize(dtype) == 0, op, arg, "data is not aligned to its ",
        itemsize(dtype), "-byte elements; pass an aligned copy");
  std::shared_ptr<void> owner(new InArray(in), KeepAliveDeleter{});
  // lattice never writes an imported array; the const_cast only satisfies Array's interface.
  return Array::from_external(const_cast<void*>(in.data()), shape, dtype, device, std::move(owner));
}

std::optional<Array> import_optional(const std::optional<InArray>& in, const char* op, const char* arg) {
  if (!in) return std::nullopt;
  return import_array(*in, op, arg);
}

nb::object export_array(const Array& array, Framework framework) {
  Array held = array;
  if (framework == Framework::numpy && !held.device().is_cpu()) held = held.to(Device::cpu());
  // JAX has no notion of lattice's stream: its arrays must be complete when
  // handed over (PyTorch and CuPy callers share their current stream with
  // lattice, see lattice/_stream.py, so their results need no wait).
  if (framework == Framework::jax && held.device().is_cuda()) {
    nb::gil_scoped_release release;
    synchronize(held.device());
  }
  std::array<std::size_t, Shape::k_max_dims> shape{};
  for (int i = 0; i < held.ndim(); ++i) shape[static_cast<std::size_t>(i)] = static_cast<std::size_t>(held.dim(i));
  const int device_type = held.device().is_cpu() ? nb::device::cpu::value : nb::device::cuda::value;
  const int device_id = held.device().is_cpu() ? 0 : held.device().index;
  void* data = held.raw();
  const auto ndim = static_cast<std::size_t>(held.ndim());
  const nb::dlpack::dtype dtype = dlpack_from_dtype(held.dtype());
  auto* keep = new Array(std::move(held));
  nb::capsule owner(keep, [](void* p) noexcept { delete static_cast<Array*>(p); });
  if (framework == Framework::torch) {
    // A bare DLPack capsule handed to torch._C._from_dlpack: nanobind's
    // pytorch export goes through the Python torch.utils.dlpack.from_dlpack
    // (a stream query per call), a measurable share of lattice.torch's per-op
    // host time. Same semantics: lattice runs on torch's current stream, so
    // there is nothing to wait for.
    nb::object capsule =
        nb::cast(nb::ndarray<>(data, ndim, shape.data(), owner, nullptr, dtype, device_type, device_id),
                 nb::rv_policy::reference);
    return torch_from_dlpack()(capsule);
  }
  if (framework == Framework::cupy && device_type == nb::device::cuda::value) {
    return nb::cast(nb::ndarray<nb::cupy>(data, ndim, shape.data(), owner, nullptr, dtype, device_type, device_id),
                    nb::rv_policy::reference);
  }
  if (framework == Framework::jax) {
    return nb::cast(nb::ndarray<nb::jax>(data, ndim, shape.data(), owner, nullptr, dtype, device_type, device_id),
                    nb::rv_policy::reference);
  }
  // Read-only: a tensor's coordinates and features are values; edit through
  // replace_feats, never in place.
  return nb::cast(
      nb::ndarray<nb::numpy, nb::ro>(data, ndim, shape.data(), owner, nullptr, dtype, device_type, device_id),
      nb::rv_policy::reference);
}

}  // namespace lattice::python

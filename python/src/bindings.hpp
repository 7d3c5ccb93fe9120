// Shared by the binding files of lattice._native: array exchange through
// DLPack (nanobind ndarrays) and the per-area registration functions.
#pragma once

#include <array>
#include <optional>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include "lattice/core/array.hpp"
#include "lattice/core/kernel_spec.hpp"

namespace lattice::python {

namespace nb = nanobind;

// Any C-contiguous array (NumPy, PyTorch, anything with __dlpack__ or the
// buffer protocol). Read-only arrays are accepted: lattice never writes its
// inputs. A non-contiguous input is converted to a contiguous copy by
// nanobind before the call (documented in lattice/__init__.py).
using InArray = nb::ndarray<nb::ro, nb::c_contig>;

// The array framework results are returned in (the caller's); the values are
// lattice._util's NUMPY, TORCH, CUPY, JAX.
enum class Framework : int { numpy = 0, torch = 1, cupy = 2, jax = 3 };

// Wraps the caller's memory without copying; the Array keeps the producer
// alive. Unsupported dtypes are a TypeError, unsupported devices a
// DeviceError, both naming `op` and `arg`.
Array import_array(const InArray& in, const char* op, const char* arg);
std::optional<Array> import_optional(const std::optional<InArray>& in, const char* op, const char* arg);

// Hands lattice memory to Python without copying (the Python array owns a
// reference to the buffer). NumPy results of device arrays are host copies.
nb::object export_array(const Array& array, Framework framework);

inline Int3 to_int3(const std::array<int, 3>& v) { return {v[0], v[1], v[2]}; }

// "float16", "bfloat16", "float32" or "float64"; TypeError naming `op` and 'dtype' otherwise.
DType float_dtype(const std::string& name, const char* op);

// Runs an op with the GIL released, so other Python threads (e.g. data
// loaders) run meanwhile. Arguments are imported before, results exported
// after, with the GIL held; an imported array released inside (e.g. by a
// relation-cache eviction) takes the GIL itself (exchange.cpp).
template <class F>
auto without_gil(F&& f) {
  nb::gil_scoped_release release;
  return f();
}

void bind_core(nb::module_& m);
void bind_ops_conv(nb::module_& m);
void bind_ops_features(nb::module_& m);
void bind_ops_pooling(nb::module_& m);
void bind_ops_voxelize(nb::module_& m);
void bind_models(nb::module_& m);
void bind_quant(nb::module_& m);
void bind_torch_support(nb::module_& m);
void bind_ops_grad(nb::module_& m);
void bind_io_sim(nb::module_& m);

}  // namespace lattice::python

// Core types: SparseTensor, CoordinateManager, CoordinateMapKey, backend_info.
#include <cstdint>
#include <tuple>

#include <nanobind/stl/array.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include "bindings.hpp"
#include "lattice/core/backend_info.hpp"
#include "lattice/core/coordinates.hpp"
#include "lattice/core/device.hpp"
#include "lattice/core/sparse_tensor.hpp"
#include "lattice/core/stream.hpp"

namespace lattice::python {

namespace {

// Python gets tuples (std::array would become a list).
std::tuple<int, int, int> from_int3(Int3 v) { return {v.x, v.y, v.z}; }

SparseTensor make_tensor(const InArray& coords, const InArray& feats, std::array<int, 3> stride,
                         std::shared_ptr<CoordinateManager> manager) {
  SparseTensorOptions options;
  options.stride = to_int3(stride);
  options.manager = std::move(manager);
  return SparseTensor::from_coords(import_array(coords, "SparseTensor", "coords"),
                                   import_array(feats, "SparseTensor", "feats"), options);
}

// The Python API exposes the active rows only. A CUDA tensor may carry more
// capacity rows than active ones: active-row features are copied into a
// capacity-sized array there (the rows past the active count are unused).
SparseTensor replace_feats(const SparseTensor& x, const InArray& feats) {
  Array f = import_array(feats, "SparseTensor.replace_feats", "feats");
  check(f.ndim() == 2, "SparseTensor.replace_feats", "feats", "expected (N, C), got shape ", f.shape().str());
  check<TypeError>(is_floating(f.dtype()), "SparseTensor.replace_feats", "feats", "expected a floating dtype, got ",
                   dtype_name(f.dtype()));
  check(f.dim(0) == x.rows() || f.dim(0) == x.capacity(), "SparseTensor.replace_feats", "feats", "has ", f.dim(0),
        " rows; the tensor has ", x.rows());
  if (f.ndim() == 2 && f.dim(0) != x.capacity() && f.dim(0) == x.rows()) {
    Array padded = Array::zeros(Shape{x.capacity(), f.dim(1)}, f.dtype(), f.device());
    copy_bytes(padded.raw(), padded.device(), f.raw(), f.device(), f.nbytes());
    f = padded;
  }
  return x.replace_feats(f);
}

nb::dict info_dict(const BackendInfo& info) {
  nb::dict d;
  d["version"] = info.version;
  d["backends"] = info.backends;
  d["blas"] = info.blas;
  d["cpu_threads"] = info.cpu_threads;
  d["cuda_runtime"] = info.cuda_runtime;
  nb::list devices;
  for (const CudaDeviceInfo& dev : info.cuda_devices) {
    nb::dict e;
    e["index"] = dev.index;
    e["name"] = dev.name;
    e["tier"] = dev.tier;
    devices.append(e);
  }
  d["cuda_devices"] = devices;
  d["default_device"] = info.default_device;
  return d;
}

}  // namespace

void bind_core(nb::module_& m) {
  nb::class_<CoordinateMapKey>(m, "CoordinateMapKey",
                               "Coordinate identity (id, stride, manager_id): same key => same coordinates, "
                               "row-aligned; equal values inserted separately get different keys.")
      .def_ro("id", &CoordinateMapKey::id)
      .def_prop_ro("stride", [](const CoordinateMapKey& k) { return from_int3(k.stride); })
      .def_ro("manager_id", &CoordinateMapKey::manager_id)
      .def("__eq__", [](const CoordinateMapKey& a, const CoordinateMapKey& b) { return a == b; })
      .def(
          "__hash__",
          [](const CoordinateMapKey& k) {
            return static_cast<std::int64_t>(k.id * 1000003u ^ k.manager_id * 8191u ^
                                             static_cast<std::uint64_t>(k.stride.x * 31 + k.stride.y * 7 + k.stride.z));
          })
      .def("__repr__", [](const CoordinateMapKey& k) { return k.str(); });

  nb::class_<CoordinateManager>(m, "CoordinateManager",
                                "Issues coordinate keys and caches relations between coordinate sets (bounded "
                                "LRU cache). CoordinateManager() makes a new one; CoordinateManager.default() is "
                                "the process-wide manager used when none is given.")
      .def(nb::new_([]() { return CoordinateManager::create(); }))
      .def_static("default", &CoordinateManager::default_manager)
      .def_prop_ro("id", &CoordinateManager::id)
      .def("owns", &CoordinateManager::owns)
      .def("clear_cache", &CoordinateManager::clear_cache)
      .def("set_cache_capacity", &CoordinateManager::set_cache_capacity)
      .def("cache_stats", [](const CoordinateManager& cm) {
        const RelationCacheStats s = cm.cache_stats();
        nb::dict d;
        d["relations"] = s.relations;
        d["coordinate_sets"] = s.coordinate_sets;
        d["hits"] = s.hits;
        d["misses"] = s.misses;
        d["evictions"] = s.evictions;
        return d;
      });

  nb::class_<SparseTensor>(m, "SparseTensor")
      .def_static("from_arrays", &make_tensor, nb::arg("coords"), nb::arg("feats"), nb::arg("stride"),
                  nb::arg("manager").none())
      .def("coords", [](const SparseTensor& x,
                        int fw) { return export_array(x.coords().rows(0, x.rows()), static_cast<Framework>(fw)); })
      .def("feats", [](const SparseTensor& x,
                       int fw) { return export_array(x.feats().rows(0, x.rows()), static_cast<Framework>(fw)); })
      // Addresses of the first coordinate / feature element, for zero-copy checks.
      .def_prop_ro("coords_address",
                   [](const SparseTensor& x) { return reinterpret_cast<std::uintptr_t>(x.coords().raw()); })
      .def_prop_ro("feats_address",
                   [](const SparseTensor& x) { return reinterpret_cast<std::uintptr_t>(x.feats().raw()); })
      .def_prop_ro("rows", &SparseTensor::rows)
      .def_prop_ro("capacity", &SparseTensor::capacity)
      .def_prop_ro("channels", &SparseTensor::channels)
      .def_prop_ro("stride", [](const SparseTensor& x) { return from_int3(x.stride()); })
      .def_prop_ro("key", &SparseTensor::key)
      .def_prop_ro("manager", &SparseTensor::manager)
      .def_prop_ro("device", [](const SparseTensor& x) { return x.device().str(); })
      .def_prop_ro("dtype", [](const SparseTensor& x) { return std::string(dtype_name(x.dtype())); })
      .def("replace_feats", &replace_feats, nb::arg("feats"))
      .def("to", [](const SparseTensor& x, const std::string& device) { return x.to(parse_device(device)); });

  // The calling thread's current stream on a CUDA device, as an integer
  // handle (cudaStream_t); 0 names the legacy default stream ("stream 0" of
  // PyTorch and CuPy). lattice/_stream.py installs the caller's framework's.
  m.def(
      "set_current_stream",
      [](int device, std::uintptr_t handle) {
        const Device d = Device::cuda(device);
        set_current_stream(handle == 0 ? legacy_default_stream(d) : Stream{d, reinterpret_cast<void*>(handle)});
      },
      nb::arg("device"), nb::arg("handle"));
  m.def(
      "current_stream",
      [](int device) {
        const Device d = Device::cuda(device);
        const void* h = current_stream(d).handle;
        return h == legacy_default_stream(d).handle ? std::uintptr_t{0} : reinterpret_cast<std::uintptr_t>(h);
      },
      nb::arg("device"));
  m.def(
      "synchronize", [](const std::string& device) { synchronize(parse_device(device)); }, nb::arg("device"),
      nb::call_guard<nb::gil_scoped_release>());
  m.def("backend_info", []() { return info_dict(backend_info()); });
  m.def("backend_info_text", []() { return to_string(backend_info()); });
  m.def("set_cpu_threads", &set_cpu_threads, nb::arg("n"));
}

}  // namespace lattice::python

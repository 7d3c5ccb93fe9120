// Points -> voxels (voxelize) and voxels -> points (devoxelize).
#include <nanobind/stl/array.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>

#include "bindings.hpp"
#include "lattice/core/sparse_tensor.hpp"
#include "lattice/ops/voxelize.hpp"
#include "params.hpp"

namespace lattice::python {

namespace {

ops::Reduction reduction_of(const std::string& name) {
  if (name == "mean") return ops::Reduction::mean;
  if (name == "sum") return ops::Reduction::sum;
  if (name == "max") return ops::Reduction::max;
  fail("voxelize", "reduction", "unknown reduction '", name, "' (mean, sum or max)");
}

nb::tuple voxelize(const InArray& points, const std::optional<InArray>& feats, D3 voxel_size, D3 origin,
                   const std::string& reduction, std::array<int, 3> stride, const std::optional<InArray>& batch_indices,
                   std::shared_ptr<CoordinateManager> manager, int framework) {
  ops::VoxelizeParams p;
  p.voxel_size = {voxel_size[0], voxel_size[1], voxel_size[2]};
  p.origin = {origin[0], origin[1], origin[2]};
  p.reduction = reduction_of(reduction);
  p.stride = to_int3(stride);
  p.manager = std::move(manager);
  const Array pts = import_array(points, "voxelize", "points");
  const std::optional<Array> f = import_optional(feats, "voxelize", "feats");
  const std::optional<Array> batch = import_optional(batch_indices, "voxelize", "batch_indices");
  ops::Voxelized v = without_gil([&] { return ops::voxelize(pts, f, p, batch); });
  const auto fw = static_cast<Framework>(framework);
  const std::int64_t rows = v.tensor.rows();
  return nb::make_tuple(v.tensor, export_array(v.inverse_rows, fw), export_array(v.counts.rows(0, rows), fw));
}

nb::object devoxelize(const SparseTensor& x, const InArray& points, D3 voxel_size, D3 origin,
                      const std::string& interpolation, const std::optional<InArray>& point_voxel_map,
                      const std::optional<InArray>& batch_indices, int framework) {
  const ops::DevoxelizeParams p = devoxelize_params(voxel_size, origin, interpolation, "devoxelize");
  const Array pts = import_array(points, "devoxelize", "points");
  const std::optional<Array> map = import_optional(point_voxel_map, "devoxelize", "point_voxel_map");
  const std::optional<Array> batch = import_optional(batch_indices, "devoxelize", "batch_indices");
  Array out = without_gil([&] { return ops::devoxelize(x, pts, p, map, batch); });
  return export_array(out, static_cast<Framework>(framework));
}

}  // namespace

void bind_ops_voxelize(nb::module_& m) {
  m.def("voxelize", &voxelize, nb::arg("points"), nb::arg("feats").none(), nb::arg("voxel_size"), nb::arg("origin"),
        nb::arg("reduction"), nb::arg("stride"), nb::arg("batch_indices").none(), nb::arg("manager").none(),
        nb::arg("framework"));
  m.def("devoxelize", &devoxelize, nb::arg("x"), nb::arg("points"), nb::arg("voxel_size"), nb::arg("origin"),
        nb::arg("interpolation"), nb::arg("point_voxel_map").none(), nb::arg("batch_indices").none(),
        nb::arg("framework"));
}

}  // namespace lattice::python

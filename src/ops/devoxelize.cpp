// devoxelize front end (SPEC §8, Appendix A "Points and voxels"):
// check every argument -> CPU or CUDA backend. Host data is checked here;
// device data by the CUDA kernels (sticky errors).
#include <cmath>

#include "backend/cpu/api_points.hpp"
#include "backend/cuda/api_points.hpp"
#include "lattice/core/trace.hpp"
#include "lattice/ops/voxelize.hpp"
#include "ops/common.hpp"
#include "ops/op_trace.hpp"
#include "relation/coord_key.hpp"

namespace lattice::ops {

namespace {

constexpr const char* k_op = "devoxelize";

void check_geometry(const DevoxelizeParams& params, const char* op) {
  for (int a = 0; a < 3; ++a) {
    check(std::isfinite(params.voxel_size[a]) && params.voxel_size[a] > 0, op, "voxel_size",
          "must be finite and positive on every axis, got (", params.voxel_size.x, ", ", params.voxel_size.y, ", ",
          params.voxel_size.z, ")");
    check(std::isfinite(params.origin[a]), op, "origin", "must be finite, got (", params.origin.x, ", ",
          params.origin.y, ", ", params.origin.z, ")");
  }
  check(params.interpolation == Interpolation::linear || params.interpolation == Interpolation::nearest, op,
        "interpolation", "unknown interpolation ", static_cast<int>(params.interpolation),
        " (expected linear or nearest)");
}

template <class P>
void check_finite_points(const P* p, std::int64_t n, const char* op) {
  for (std::int64_t i = 0; i < 3 * n; ++i) {
    check(std::isfinite(p[i]), op, "points", "point ", i / 3, " has a non-finite coordinate ", p[i], " on axis ",
          "xyz"[i % 3]);
  }
}

}  // namespace

namespace detail {

void check_devoxelize_args(const SparseTensor& x, const Array& points, const DevoxelizeParams& params,
                           const std::optional<Array>& point_voxel_map, const std::optional<Array>& batch_indices,
                           const char* op) {
  detail::check_input(x, op);
  const Device device = x.device();
  check(points.defined(), op, "points", "undefined array");
  check<TypeError>(points.dtype() == DType::f32 || points.dtype() == DType::f64, op, "points",
                   "must be float32 or float64, got ", dtype_name(points.dtype()));
  check(points.ndim() == 2 && points.dim(1) == 3, op, "points", "must have shape (N, 3), got ", points.shape().str());
  check<DeviceError>(points.device() == device, op, "points", "is on ", points.device().str(), " but x is on ",
                     device.str());
  const std::int64_t n = points.dim(0);
  check(n <= (std::int64_t{1} << 31) - 1, op, "points", n, " points exceed int32 row indices");
  check_geometry(params, op);
  if (point_voxel_map) {
    const Array& map = *point_voxel_map;
    check(map.defined(), op, "point_voxel_map", "undefined array");
    check(params.interpolation == Interpolation::nearest, op, "point_voxel_map",
          "is only used with interpolation 'nearest'; linear interpolation looks up the 8 corners itself");
    check<TypeError>(map.dtype() == DType::i32, op, "point_voxel_map", "must be int32, got ", dtype_name(map.dtype()));
    check(map.ndim() == 1 && map.dim(0) == n, op, "point_voxel_map", "must have shape (", n, ",), got ",
          map.shape().str());
    check<DeviceError>(map.device() == device, op, "point_voxel_map", "is on ", map.device().str(), " but x is on ",
                       device.str());
  }
  if (batch_indices) {
    const Array& b = *batch_indices;
    check(b.defined(), op, "batch_indices", "undefined array");
    check<TypeError>(b.dtype() == DType::i32, op, "batch_indices", "must be int32, got ", dtype_name(b.dtype()));
    check(b.ndim() == 1 && b.dim(0) == n, op, "batch_indices", "must have shape (", n, ",), got ", b.shape().str());
    check<DeviceError>(b.device() == device, op, "batch_indices", "is on ", b.device().str(), " but x is on ",
                       device.str());
  }
  if (device.is_cpu()) {
    if (points.dtype() == DType::f32) {
      check_finite_points(points.data<float>(), n, op);
    } else {
      check_finite_points(points.data<double>(), n, op);
    }
    if (point_voxel_map) {
      const std::int64_t rows = x.rows();
      const std::int32_t* m = point_voxel_map->data<std::int32_t>();
      for (std::int64_t i = 0; i < n; ++i) {
        check(m[i] >= -1 && m[i] < rows, op, "point_voxel_map", "entry ", i, " is ", m[i], ", outside [-1, ", rows,
              ") (x has ", rows, " rows)");
      }
    }
    if (batch_indices) {
      const std::int32_t* b = batch_indices->data<std::int32_t>();
      for (std::int64_t i = 0; i < n; ++i) {
        check(b[i] >= 0 && b[i] <= lattice::detail::k_batch_max, op, "batch_indices", "entry ", i, " is ", b[i],
              ", outside [0, ", lattice::detail::k_batch_max, "]");
      }
    }
  }
}

}  // namespace detail

Array devoxelize(const SparseTensor& x, const Array& points, const DevoxelizeParams& params,
                 const std::optional<Array>& point_voxel_map, const std::optional<Array>& batch_indices) {
  detail::check_devoxelize_args(x, points, params, point_voxel_map, batch_indices, k_op);
  const Device device = x.device();
  const std::int64_t n = points.dim(0);
  detail::OpTrace trace(device);
  Array out = Array::empty(Shape{n, x.channels()}, x.dtype(), device);
  if (n > 0 && x.channels() > 0) {
    if (device.is_cpu()) {
      cpu::devoxelize(*x.coordinate_set(), x.feats(), points, point_voxel_map, batch_indices, params, out);
    } else {
      cuda::devoxelize(*x.coordinate_set(), x.feats(), points, point_voxel_map, batch_indices, params, out);
    }
  }
  OpRecord rec;
  rec.op = k_op;
  rec.route = params.interpolation == Interpolation::linear ? "linear" : "nearest";
  rec.channels_in = rec.channels_out = x.channels();
  trace.record(std::move(rec), x.coordinate_set(), nullptr, nullptr, false);
  return out;
}

}  // namespace lattice::ops

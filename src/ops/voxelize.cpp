#include "lattice/ops/voxelize.hpp"

#include <cmath>
#include <string>

#include "backend/cpu/api.hpp"
#include "backend/cpu/api_points.hpp"
#include "backend/cuda/api.hpp"
#include "backend/cuda/api_points.hpp"
#include "lattice/core/trace.hpp"
#include "ops/common.hpp"
#include "ops/op_trace.hpp"
#include "relation/coord_key.hpp"

namespace lattice::ops {

namespace {
constexpr const char* k_op = "voxelize";
// Checks shared by voxelize and voxelize_with_quantization (geometry, points,
// batch indices); returns the point count.
std::int64_t check_points(const Array& points, const Float3& voxel_size, const Float3& origin, const Int3& stride,
                          const std::optional<Array>& batch_indices, const char* op) {
  check(points.defined(), op, "points", "undefined array");
  check<TypeError>(points.dtype() == DType::f32 || points.dtype() == DType::f64, op, "points",
                   "must be float32 or float64, got ", dtype_name(points.dtype()));
  check(points.ndim() == 2 && points.dim(1) == 3, op, "points", "must have shape (N, 3), got ", points.shape().str());
  const std::int64_t n = points.dim(0);
  check(n <= (std::int64_t{1} << 31) - 1, op, "points", n, " points exceed int32 row indices");
  const Device device = points.device();
  for (int a = 0; a < 3; ++a) {
    check(std::isfinite(voxel_size[a]) && voxel_size[a] > 0, op, "voxel_size",
          "must be finite and positive on every axis, got (", voxel_size.x, ", ", voxel_size.y, ", ", voxel_size.z,
          ")");
    check(std::isfinite(origin[a]), op, "origin", "must be finite, got (", origin.x, ", ", origin.y, ", ", origin.z,
          ")");
    check(stride[a] >= 1 && stride[a] <= 4096, op, "stride", "must be in [1, 4096], got ", stride.str());
  }
  if (batch_indices) {
    check(batch_indices->defined(), op, "batch_indices", "undefined array");
    check<TypeError>(batch_indices->dtype() == DType::i32, op, "batch_indices", "must be int32, got ",
                     dtype_name(batch_indices->dtype()));
    check(batch_indices->ndim() == 1 && batch_indices->dim(0) == n, op, "batch_indices", "must have shape (", n,
          ",), got ", batch_indices->shape().str());
    check<DeviceError>(batch_indices->device() == device, op, "batch_indices", "is on ", batch_indices->device().str(),
                       " but points are on ", device.str());
    if (device.is_cpu()) {
      const std::int32_t* b = batch_indices->data<std::int32_t>();
      for (std::int64_t i = 0; i < n; ++i) {
        check(b[i] >= 0 && b[i] <= lattice::detail::k_batch_max, op, "batch_indices", "entry ", i, " is ", b[i],
              ", outside [0, ", lattice::detail::k_batch_max, "]");
      }
    }
  }
  return n;
}

}  // namespace

Voxelized voxelize(const Array& points, const std::optional<Array>& feats, const VoxelizeParams& params,
                   const std::optional<Array>& batch_indices) {
  const std::int64_t n = check_points(points, params.voxel_size, params.origin, params.stride, batch_indices, k_op);
  const Device device = points.device();
  check(params.reduction == Reduction::mean || params.reduction == Reduction::sum || params.reduction == Reduction::max,
        k_op, "reduction", "unknown reduction ", static_cast<int>(params.reduction));
  if (feats) {
    check(feats->defined(), k_op, "feats", "undefined array");
    check<TypeError>(is_floating(feats->dtype()), k_op, "feats", "must be floating, got ", dtype_name(feats->dtype()));
    check(feats->ndim() == 2 && feats->dim(0) == n, k_op, "feats", "must have shape (", n, ", C), got ",
          feats->shape().str());
    check<DeviceError>(feats->device() == device, k_op, "feats", "is on ", feats->device().str(), " but points are on ",
                       device.str());
  }
  detail::OpTrace trace(device);
  auto manager = params.manager ? params.manager : CoordinateManager::default_manager();
  std::shared_ptr<const CoordinateSet> set;
  Voxelized out;
  if (device.is_cpu()) {
    cpu::VoxelizeResult r = cpu::voxelize(points, feats, batch_indices, params);
    const std::int64_t m = r.coords.dim(0);
    set = manager->insert(std::move(r.coords), Array::scalar<std::int32_t>(static_cast<std::int32_t>(m), device),
                          params.stride, std::move(r.batch_counts), m);
    out = {SparseTensor(set, manager, std::move(r.feats)), std::move(r.inverse_rows), std::move(r.counts)};
  } else {
    // Values already on the device are checked by the kernels (sticky errors).
    cuda::VoxelizeResult r = cuda::voxelize(points, feats, batch_indices, params);
    set = manager->insert(std::move(r.coords), std::move(r.active_rows), params.stride);
    out = {SparseTensor(set, manager, std::move(r.feats)), std::move(r.inverse_rows), std::move(r.counts)};
  }
  OpRecord rec;
  rec.op = k_op;
  rec.route = device.is_cpu() ? "cpu" : "cuda";
  rec.channels_in = rec.channels_out = feats ? feats->dim(1) : 0;
  rec.rows_in = n;  // the point count, known on the host
  trace.record(std::move(rec), nullptr, set, nullptr, false);
  return out;
}

Quantized voxelize_with_quantization(const Array& points, const QuantizeParams& params,
                                     const std::optional<Array>& batch_indices) {
  constexpr const char* op = "voxelize_with_quantization";
  const std::int64_t n = check_points(points, params.voxel_size, params.origin, params.stride, batch_indices, op);
  const Device device = points.device();
  // The voxels are voxelize's own (one implementation of the IEEE cell rule).
  VoxelizeParams vp;
  vp.voxel_size = params.voxel_size;
  vp.origin = params.origin;
  vp.stride = params.stride;
  Quantized out;
  if (device.is_cpu()) {
    cpu::VoxelizeResult r;
    try {
      r = cpu::voxelize(points, std::nullopt, batch_indices, vp);
    } catch (const ValueError& e) {
      // The shared backend names voxelize; name the op the user called.
      std::string what = e.what();
      const std::string prefix = std::string("[") + k_op + "]";
      if (what.starts_with(prefix)) what = std::string("[") + op + "]" + what.substr(prefix.size());
      throw ValueError(what);
    }
    const std::int64_t m = r.coords.dim(0);
    out.point_rows = cpu::first_points(r.inverse_rows, m);
    out.coords = std::move(r.coords);
    out.inverse_rows = std::move(r.inverse_rows);
    out.counts = std::move(r.counts);
    out.active_rows = Array::scalar<std::int32_t>(static_cast<std::int32_t>(m), device);
  } else {
    // Device values (non-finite points, batch ids) are checked by voxelize's kernels.
    cuda::VoxelizeResult r = cuda::voxelize(points, std::nullopt, batch_indices, vp, "voxelize_with_quantization");
    out.point_rows = cuda::first_points(r.inverse_rows, r.active_rows);
    out.coords = std::move(r.coords);
    out.inverse_rows = std::move(r.inverse_rows);
    out.counts = std::move(r.counts);
    out.active_rows = std::move(r.active_rows);
  }
  (void)n;
  return out;
}

}  // namespace lattice::ops

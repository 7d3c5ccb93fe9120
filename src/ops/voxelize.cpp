#include "lattice/ops/voxelize.hpp"

#include <cmath>

#include "backend/cpu/api.hpp"
#include "backend/cuda/api.hpp"
#include "lattice/core/trace.hpp"
#include "ops/common.hpp"
#include "ops/op_trace.hpp"
#include "relation/coord_key.hpp"

namespace lattice::ops {

namespace {
constexpr const char* k_op = "voxelize";
}  // namespace

Voxelized voxelize(const Array& points, const std::optional<Array>& feats, const VoxelizeParams& params,
                   const std::optional<Array>& batch_indices) {
  check(points.defined(), k_op, "points", "undefined array");
  check<TypeError>(points.dtype() == DType::f32 || points.dtype() == DType::f64, k_op, "points",
                   "must be float32 or float64, got ", dtype_name(points.dtype()));
  check(points.ndim() == 2 && points.dim(1) == 3, k_op, "points", "must have shape (N, 3), got ", points.shape().str());
  const std::int64_t n = points.dim(0);
  check(n <= (std::int64_t{1} << 31) - 1, k_op, "points", n, " points exceed int32 row indices");
  const Device device = points.device();
  for (int a = 0; a < 3; ++a) {
    check(std::isfinite(params.voxel_size[a]) && params.voxel_size[a] > 0, k_op, "voxel_size",
          "must be finite and positive on every axis, got (", params.voxel_size.x, ", ", params.voxel_size.y, ", ",
          params.voxel_size.z, ")");
    check(std::isfinite(params.origin[a]), k_op, "origin", "must be finite, got (", params.origin.x, ", ",
          params.origin.y, ", ", params.origin.z, ")");
    check(params.stride[a] >= 1 && params.stride[a] <= 4096, k_op, "stride", "must be in [1, 4096], got ",
          params.stride.str());
  }
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
  if (batch_indices) {
    check(batch_indices->defined(), k_op, "batch_indices", "undefined array");
    check<TypeError>(batch_indices->dtype() == DType::i32, k_op, "batch_indices", "must be int32, got ",
                     dtype_name(batch_indices->dtype()));
    check(batch_indices->ndim() == 1 && batch_indices->dim(0) == n, k_op, "batch_indices", "must have shape (", n,
          ",), got ", batch_indices->shape().str());
    check<DeviceError>(batch_indices->device() == device, k_op, "batch_indices", "is on ",
                       batch_indices->device().str(), " but points are on ", device.str());
    if (device.is_cpu()) {
      const std::int32_t* b = batch_indices->data<std::int32_t>();
      for (std::int64_t i = 0; i < n; ++i) {
        check(b[i] >= 0 && b[i] <= lattice::detail::k_batch_max, k_op, "batch_indices", "entry ", i, " is ", b[i],
              ", outside [0, ", lattice::detail::k_batch_max, "]");
      }
    }
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

}  // namespace lattice::ops

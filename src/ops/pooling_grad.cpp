// VJP front ends of pooling, resampling and the point <-> voxel ops (SPEC §13):
// check every argument -> the forward's relation / index (cached) -> backend.
// Every backend kernel is a gather (no floating-point atomics).
#include "lattice/ops/pooling_grad.hpp"

#include <cmath>
#include <string>

#include "backend/cpu/api.hpp"
#include "backend/cuda/api.hpp"
#include "lattice/core/relation.hpp"
#include "ops/common.hpp"
#include "relation/build.hpp"
#include "relation/coord_key.hpp"

namespace lattice::ops {

namespace {

void check_pool_mode(PoolMode mode, const char* op) {
  check(mode == PoolMode::sum || mode == PoolMode::max || mode == PoolMode::avg, op, "mode", "unknown pooling mode ",
        static_cast<int>(mode), " (expected sum, max or avg)");
}

// dy: a sparse tensor on `expected` (the forward output's coordinates), same
// dtype, device and channels as x.
void check_dy_values(const SparseTensor& x, const SparseTensor& dy, const char* op) {
  detail::check_input(dy, op, "dy");
  check<TypeError>(dy.dtype() == x.dtype(), op, "dy", "dtype ", dtype_name(dy.dtype()), " differs from x's ",
                   dtype_name(x.dtype()));
  check<DeviceError>(dy.device() == x.device(), op, "dy", "is on ", dy.device().str(), " but x is on ",
                     x.device().str());
  check(dy.channels() == x.channels(), op, "dy", "has ", dy.channels(), " channels but x has ", x.channels());
  check(dy.manager() == x.manager(), op, "dy", "belongs to manager ", dy.key().manager_id, " but x belongs to manager ",
        x.key().manager_id);
}

void check_dy(const SparseTensor& x, const SparseTensor& dy, const CoordinateSet& expected, const char* op) {
  check_dy_values(x, dy, op);
  check(dy.key() == expected.key(), op, "dy", "coordinate key ", dy.key().str(), " is not the forward output's key ",
        expected.key().str(), "; pass the gradient on the forward's output");
}

SparseTensor relation_backward(const SparseTensor& x, const SparseTensor& dy, PoolMode mode, RelationKind kind,
                               const KernelSpec& spec, const std::shared_ptr<const CoordinateSet>& target,
                               const char* op) {
  check_dy_values(x, dy, op);
  // The forward's relation, normally from the manager's cache.
  auto rel = x.manager()->relation(x.coordinate_set(), kind, spec, target, op, nullptr);
  const auto output = rel->output();
  check(output != nullptr, op, "x", "the forward output's coordinates no longer exist");
  if (target != nullptr || output->key() == dy.key()) {
    check_dy(x, dy, *output, op);
  } else {
    // The cached relation was evicted (or cleared) and rebuilt with a new
    // output set: the same rule onto dy's own set gives the forward's edges.
    check(dy.stride() == output->stride(), op, "dy", "has stride ", dy.stride().str(), " but the forward output's is ",
          output->stride().str(), "; pass the gradient on the forward's output");
    const RelationKind onto = kind == RelationKind::forward ? RelationKind::target : RelationKind::target_transposed;
    rel = x.manager()->relation(x.coordinate_set(), onto, spec, dy.coordinate_set(), op, nullptr);
  }
  Array dx = Array::empty(Shape{x.capacity(), x.channels()}, x.dtype(), x.device());
  if (x.device().is_cpu()) {
    cpu::pool_backward(*rel, x.feats(), dy.feats(), mode, dx);
  } else {
    cuda::pool_backward(*rel, x.feats(), dy.feats(), mode, dx);
  }
  return x.replace_feats(std::move(dx));
}

}  // namespace

SparseTensor pool3d_backward(const SparseTensor& x, const SparseTensor& dy, PoolMode mode, const Pool3dParams& params) {
  constexpr const char* op = "pool3d_backward";
  detail::check_input(x, op);
  check_pool_mode(mode, op);
  const KernelSpec spec{params.kernel_size, params.stride, params.padding, params.dilation};
  validate_kernel_spec(spec, op);
  lattice::detail::output_stride(RelationKind::forward, x.stride(), spec.stride, op);
  detail::check_input(dy, op, "dy");
  return relation_backward(x, dy, mode, RelationKind::forward, spec, nullptr, op);
}

SparseTensor pool_transpose3d_backward(const SparseTensor& x, const SparseTensor& dy,
                                       const PoolTranspose3dParams& params) {
  constexpr const char* op = "pool_transpose3d_backward";
  detail::check_input(x, op);
  detail::check_input(dy, op, "dy");
  const KernelSpec spec{params.kernel_size, params.stride, params.padding, params.dilation};
  validate_kernel_spec(spec, op);
  const bool has_target = params.target.has_value();
  const RelationKind kind = has_target ? RelationKind::target_transposed : RelationKind::transposed;
  const Int3 out_stride = lattice::detail::output_stride(kind, x.stride(), spec.stride, op);
  std::shared_ptr<const CoordinateSet> target;
  if (has_target) target = detail::resolve_resample_target(x, params.target, out_stride, op, "target");
  // The forward averages over this relation, so its adjoint is avg pooling's.
  return relation_backward(x, dy, PoolMode::avg, kind, spec, target, op);
}

SparseTensor global_pool_backward(const SparseTensor& x, const Array& dy, PoolMode mode) {
  constexpr const char* op = "global_pool_backward";
  detail::check_input(x, op);
  check_pool_mode(mode, op);
  check(dy.defined(), op, "dy", "undefined array");
  check<TypeError>(dy.dtype() == x.dtype(), op, "dy", "dtype ", dtype_name(dy.dtype()), " differs from x's ",
                   dtype_name(x.dtype()));
  check<DeviceError>(dy.device() == x.device(), op, "dy", "is on ", dy.device().str(), " but x is on ",
                     x.device().str());
  check(dy.ndim() == 2 && dy.dim(1) == x.channels() && dy.dim(0) >= 1 && dy.dim(0) <= 1023, op, "dy",
        "must have shape (B, ", x.channels(), ") with B in [1, 1023], got ", dy.shape().str());
  Array dx = Array::empty(Shape{x.capacity(), x.channels()}, x.dtype(), x.device());
  if (x.device().is_cpu()) {
    const std::int64_t rows = x.rows();
    const std::int32_t* c = x.coords().data<std::int32_t>();
    for (std::int64_t r = 0; r < rows; ++r) {
      check(c[4 * r] < dy.dim(0), op, "dy", "has ", dy.dim(0), " batch rows but row ", r, " of x has batch index ",
            c[4 * r]);
    }
    cpu::global_pool_backward(x.coords(), rows, x.feats(), dy, mode, dx);
  } else {
    // Batch ids beyond dy's rows are a sticky device error (the rows stay on the device).
    cuda::global_pool_backward(*x.coordinate_set(), x.feats(), dy, mode, dx, op);
  }
  return x.replace_feats(std::move(dx));
}

SparseTensor trilinear_upsample3d_backward(const SparseTensor& x, const SparseTensor& dy,
                                           const TrilinearUpsample3dParams& params) {
  constexpr const char* op = "trilinear_upsample3d_backward";
  detail::check_input(x, op);
  detail::check_input(dy, op, "dy");
  const Int3 r = params.stride;
  check(r.x >= 1 && r.y >= 1 && r.z >= 1, op, "stride", "must be positive on every axis, got ", r.str());
  check(r.x <= 64 && r.y <= 64 && r.z <= 64, op, "stride", "must be at most 64 on every axis, got ", r.str());
  const Int3 s = x.stride();
  check(s.x % r.x == 0 && s.y % r.y == 0 && s.z % r.z == 0, op, "stride", r.str(),
        " does not divide the tensor stride ", s.str());
  const Int3 fine_stride{s.x / r.x, s.y / r.y, s.z / r.z};
  check_dy_values(x, dy, op);
  if (params.target.has_value()) {
    const auto target = detail::resolve_resample_target(x, params.target, fine_stride, op, "target");
    check_dy(x, dy, *target, op);
  } else {
    check_dy(x, dy, *dy.coordinate_set(), op);
  }
  check(dy.stride() == fine_stride, op, "dy", "has stride ", dy.stride().str(), " but the fine stride is ",
        fine_stride.str());
  Array dx = Array::empty(Shape{x.capacity(), x.channels()}, x.dtype(), x.device());
  if (x.device().is_cpu()) {
    cpu::trilinear_upsample_backward(*x.coordinate_set(), *dy.coordinate_set(), dy.feats(), r, dx, op);
  } else {
    cuda::trilinear_upsample_backward(*x.coordinate_set(), *dy.coordinate_set(), dy.feats(), r, dx, op);
  }
  return x.replace_feats(std::move(dx));
}

SparseTensor devoxelize_backward(const SparseTensor& x, const Array& points, const Array& dy,
                                 const DevoxelizeParams& params, const std::optional<Array>& point_voxel_map,
                                 const std::optional<Array>& batch_indices) {
  constexpr const char* op = "devoxelize_backward";
  detail::check_input(x, op);
  check(dy.defined(), op, "dy", "undefined array");
  check<TypeError>(dy.dtype() == x.dtype(), op, "dy", "dtype ", dtype_name(dy.dtype()), " differs from x's ",
                   dtype_name(x.dtype()));
  check<DeviceError>(dy.device() == x.device(), op, "dy", "is on ", dy.device().str(), " but x is on ",
                     x.device().str());
  const std::int64_t n = points.defined() && points.ndim() == 2 ? points.dim(0) : -1;
  check(dy.ndim() == 2 && dy.dim(1) == x.channels() && (n < 0 || dy.dim(0) == n), op, "dy", "must have shape (", n,
        ", ", x.channels(), "), got ", dy.shape().str());
  // The forward's checks (points, geometry, map, batch ids) under this op's name.
  detail::check_devoxelize_args(x, points, params, point_voxel_map, batch_indices, op);
  if (!x.device().is_cpu()) {
    // Device-side values (non-finite points, map entries, batch ids) are
    // checked by the forward's kernel (sticky errors naming devoxelize); the
    // backward kernel has no checks of its own, so run it once for them.
    (void)devoxelize(x, points, params, point_voxel_map, batch_indices);
  }
  Array dx = Array::empty(Shape{x.capacity(), x.channels()}, x.dtype(), x.device());
  if (x.device().is_cpu()) {
    cpu::devoxelize_backward(*x.coordinate_set(), points, dy, point_voxel_map, batch_indices, params, dx);
  } else {
    cuda::devoxelize_backward(*x.coordinate_set(), points, dy, point_voxel_map, batch_indices, params, dx);
  }
  return x.replace_feats(std::move(dx));
}

Array voxelize_backward(const Voxelized& forward, const Array& feats, const SparseTensor& dy, Reduction reduction) {
  constexpr const char* op = "voxelize_backward";
  check(forward.tensor.defined(), op, "forward", "has no tensor");
  check(reduction == Reduction::mean || reduction == Reduction::sum || reduction == Reduction::max, op, "reduction",
        "unknown reduction ", static_cast<int>(reduction), " (expected mean, sum or max)");
  check(feats.defined(), op, "feats", "undefined array");
  check<TypeError>(is_floating(feats.dtype()), op, "feats", "must be floating, got ", dtype_name(feats.dtype()));
  const Array& inv = forward.inverse_rows;
  check(inv.defined() && inv.dtype() == DType::i32 && inv.ndim() == 1, op, "forward",
        "inverse_rows must be an (N,) int32 array");
  const std::int64_t n = inv.dim(0);
  check(feats.ndim() == 2 && feats.dim(0) == n, op, "feats", "must have shape (", n, ", C), got ", feats.shape().str());
  const Device device = feats.device();
  check<DeviceError>(inv.device() == device && forward.counts.device() == device, op, "forward", "is on ",
                     inv.device().str(), " but feats are on ", device.str());
  detail::check_input(dy, op, "dy");
  check(dy.key() == forward.tensor.key(), op, "dy", "coordinate key ", dy.key().str(),
        " is not the forward tensor's key ", forward.tensor.key().str());
  check<TypeError>(dy.dtype() == feats.dtype(), op, "dy", "dtype ", dtype_name(dy.dtype()), " differs from feats' ",
                   dtype_name(feats.dtype()));
  check<DeviceError>(dy.device() == device, op, "dy", "is on ", dy.device().str(), " but feats are on ", device.str());
  check(dy.channels() == feats.dim(1), op, "dy", "has ", dy.channels(), " channels but feats have ", feats.dim(1));
  Array dfeats = Array::empty(Shape{n, feats.dim(1)}, feats.dtype(), device);
  if (n == 0 || feats.dim(1) == 0) return dfeats;
  if (device.is_cpu()) {
    const std::int64_t m = dy.rows();
    const std::int32_t* p = inv.data<std::int32_t>();
    for (std::int64_t i = 0; i < n; ++i) {
      check(p[i] >= 0 && p[i] < m, op, "forward", "inverse_rows entry ", i, " is ", p[i], ", outside [0, ", m, ")");
    }
    cpu::voxelize_backward(inv, forward.counts, feats, dy.feats(), reduction, dfeats);
  } else {
    cuda::voxelize_backward(inv, forward.counts, feats, dy.feats(), dy.active_rows(), reduction, dfeats);
  }
  return dfeats;
}

}  // namespace lattice::ops

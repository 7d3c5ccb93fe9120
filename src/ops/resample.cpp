// Resampling front ends (SPEC §6, Appendix A "Pooling"): pool_transpose3d
// reuses the backends' avg pooling over the (target-)transposed relation;
// trilinear_upsample3d builds (or takes) the fine support and interpolates.
#include "lattice/ops/resample.hpp"

#include "backend/cpu/api.hpp"
#include "backend/cuda/api.hpp"
#include "lattice/core/relation.hpp"
#include "lattice/ops/pooling.hpp"
#include "ops/common.hpp"
#include "ops/op_trace.hpp"
#include "relation/build.hpp"

namespace lattice::ops {

namespace detail {

// Declared in ops/common.hpp (also used by normalized_conv.cpp, pooling_grad.cpp).
std::shared_ptr<const CoordinateSet> resolve_resample_target(const SparseTensor& x, const TargetCoords& target,
                                                             Int3 stride, const char* op, const char* arg) {
  const auto& v = target.value();
  std::shared_ptr<const CoordinateSet> set;
  if (const auto* t = std::get_if<SparseTensor>(&v)) {
    check(t->defined(), op, arg, "undefined sparse tensor");
    check(t->manager() == x.manager(), op, arg, "target tensor belongs to manager ", t->key().manager_id,
          " but x belongs to manager ", x.key().manager_id, "; tensors from different managers cannot be combined");
    set = t->coordinate_set();
  } else if (const auto* key = std::get_if<CoordinateMapKey>(&v)) {
    check(x.manager()->owns(*key), op, arg, key->str(), " was not issued by x's manager (", x.key().manager_id, ")");
    set = x.manager()->find(*key);
    check(set != nullptr, op, arg, key->str(), " refers to coordinates that no longer exist");
  } else {
    const Array& coords = std::get<Array>(v);
    try {
      // The user-facing constructor applies every coordinate check.
      SparseTensorOptions options;
      options.stride = stride;
      options.manager = x.manager();
      const SparseTensor registered = SparseTensor::from_coords(
          coords, Array::empty(Shape{coords.defined() ? coords.dim(0) : 0, 0}, DType::f32, coords.device()), options);
      set = registered.coordinate_set();
    } catch (const ValueError& e) {
      throw ValueError(lattice::detail::concat("[", op, "] argument '", arg, "': ", e.what()));
    } catch (const TypeError& e) {
      throw TypeError(lattice::detail::concat("[", op, "] argument '", arg, "': ", e.what()));
    }
  }
  check<DeviceError>(set->device() == x.device(), op, arg, "is on ", set->device().str(), " but x is on ",
                     x.device().str());
  check(set->stride() == stride, op, arg, "has stride ", set->stride().str(), " but the output stride is ",
        stride.str());
  return set;
}

}  // namespace detail

namespace {

OpRecord resample_record(const char* op, const char* route, std::int64_t c) {
  OpRecord r;
  r.op = op;
  r.route = route;
  r.channels_in = r.channels_out = c;
  return r;
}

}  // namespace

SparseTensor pool_transpose3d(const SparseTensor& x, const PoolTranspose3dParams& params) {
  constexpr const char* op = "pool_transpose3d";
  detail::check_input(x, op);
  const KernelSpec spec{params.kernel_size, params.stride, params.padding, params.dilation};
  validate_kernel_spec(spec, op);
  const bool has_target = params.target.has_value();
  const RelationKind kind = has_target ? RelationKind::target_transposed : RelationKind::transposed;
  // Stride rule (r must divide s) before any coordinates are registered.
  const Int3 out_stride = lattice::detail::output_stride(kind, x.stride(), spec.stride, op);
  std::shared_ptr<const CoordinateSet> target;
  if (has_target) target = detail::resolve_resample_target(x, params.target, out_stride, op, "target");
  detail::OpTrace trace(x.device());
  bool cached = false;
  auto rel = x.manager()->relation(x.coordinate_set(), kind, spec, target, op, &cached);
  trace.relation_done(cached);
  const auto output = rel->output();
  Array out = Array::empty(Shape{output->capacity(), x.channels()}, x.dtype(), x.device());
  // avg over a relation divides by the edges reaching each output row: the
  // average of the coarse rows related to each fine row (unreached rows: 0).
  if (x.device().is_cpu()) {
    cpu::pool(*rel, x.feats(), PoolMode::avg, out);
  } else {
    cuda::pool(*rel, x.feats(), PoolMode::avg, out);
  }
  trace.record(resample_record(op, "avg", x.channels()), x.coordinate_set(), output, rel, false);
  return SparseTensor(output, x.manager(), std::move(out));
}

SparseTensor trilinear_upsample3d(const SparseTensor& x, const TrilinearUpsample3dParams& params) {
  constexpr const char* op = "trilinear_upsample3d";
  detail::check_input(x, op);
  const Int3 r = params.stride;
  check(r.x >= 1 && r.y >= 1 && r.z >= 1, op, "stride", "must be positive on every axis, got ", r.str());
  check(r.x <= 64 && r.y <= 64 && r.z <= 64, op, "stride", "must be at most 64 on every axis, got ", r.str());
  const Int3 s = x.stride();
  check(s.x % r.x == 0 && s.y % r.y == 0 && s.z % r.z == 0, op, "stride", r.str(),
        " does not divide the tensor stride ", s.str());
  const Int3 fine_stride{s.x / r.x, s.y / r.y, s.z / r.z};
  std::shared_ptr<const CoordinateSet> fine;
  if (params.target.has_value()) fine = detail::resolve_resample_target(x, params.target, fine_stride, op, "target");
  detail::OpTrace trace(x.device());
  const CoordinateSet& coarse = *x.coordinate_set();
  if (!fine) {
    // Children support: capacity * r^3 rows, registered as a new set.
    const std::int64_t per = r.product();
    if (x.device().is_cpu()) {
      Array coords = cpu::upsample_children(coarse, r, fine_stride, op);
      const std::int64_t rows = coords.dim(0);
      Array counts = cpu::batch_counts(coords, rows);
      fine = x.manager()->insert(std::move(coords),
                                 Array::scalar<std::int32_t>(static_cast<std::int32_t>(rows), Device::cpu()),
                                 fine_stride, std::move(counts), rows);
    } else {
      check(x.capacity() * per <= std::int64_t{0x7fffffff}, op, "stride", "children support of ", x.capacity(), " x ",
            per, " rows exceeds the int32 row range");
      cuda::ChildrenSupport parts = cuda::upsample_children(coarse, r, fine_stride, op);
      std::optional<std::int64_t> known;
      if (const auto k = coarse.known_rows()) known = *k * per;
      fine =
          x.manager()->insert(std::move(parts.coords), std::move(parts.active_rows), fine_stride, std::nullopt, known);
    }
  }
  Array out = Array::empty(Shape{fine->capacity(), x.channels()}, x.dtype(), x.device());
  if (x.device().is_cpu()) {
    cpu::trilinear_upsample(coarse, x.feats(), *fine, r, out, op);
  } else {
    cuda::trilinear_upsample(coarse, x.feats(), *fine, r, out, op);
  }
  trace.record(resample_record(op, "trilinear", x.channels()), x.coordinate_set(), fine, nullptr, false);
  return SparseTensor(fine, x.manager(), std::move(out));
}

}  // namespace lattice::ops

// Convolution front ends: check arguments -> build or reuse the relation ->
// pick a route -> run the backend. One function per public op, sharing run_conv.
#include "lattice/ops/conv.hpp"

#include <atomic>

#include "backend/cpu/api.hpp"
#include "backend/cuda/api.hpp"
#include "lattice/core/relation.hpp"
#include "lattice/core/trace.hpp"
#include "ops/common.hpp"
#include "ops/op_trace.hpp"
#include "ops/weights.hpp"
#include "relation/build.hpp"

namespace lattice::ops {

std::string_view route_name(ConvRoute route) {
  switch (route) {
    case ConvRoute::automatic:
      return "automatic";
    case ConvRoute::pointwise_matmul:
      return "pointwise_matmul";
    case ConvRoute::gather_gemm_scatter:
      return "gather_gemm_scatter";
    case ConvRoute::implicit_gemm:
      return "implicit_gemm";
    case ConvRoute::sorted_implicit_gemm:
      return "sorted_implicit_gemm";
    case ConvRoute::fetch_on_demand:
      return "fetch_on_demand";
  }
  return "?";
}

namespace {
std::atomic<bool> g_autotune{false};
}  // namespace

void set_conv_autotune(bool enabled) { g_autotune.store(enabled); }
bool conv_autotune() { return g_autotune.load(); }

namespace {

struct ConvCall {
  const char* op;
  RelationKind kind;  // forward or transposed/generative kind; target variants derived
  KernelSpec spec;
  const TargetCoords* target;
  ConvRoute route;
  bool allow_tf32;
  const ConvEpilogue* epilogue;
};

// Checks the epilogue's arrays (the residual's key is checked once the output is known).
void check_epilogue(const ConvEpilogue& e, std::int64_t cout, const SparseTensor& x, const char* op) {
  detail::check_vector(e.scale, cout, DType::f32, x.device(), op, "epilogue.scale");
  detail::check_vector(e.shift, cout, DType::f32, x.device(), op, "epilogue.shift");
  if (e.residual) {
    check(e.residual->defined(), op, "epilogue.residual", "undefined sparse tensor");
    check<TypeError>(e.residual->dtype() == x.dtype(), op, "epilogue.residual", "dtype ",
                     dtype_name(e.residual->dtype()), " differs from the features' ", dtype_name(x.dtype()));
    check<DeviceError>(e.residual->device() == x.device(), op, "epilogue.residual", "is on ",
                       e.residual->device().str(), " but the features are on ", x.device().str());
    check(e.residual->channels() == cout, op, "epilogue.residual", "has ", e.residual->channels(),
          " channels, the output has ", cout);
  }
}

void check_residual_key(const ConvEpilogue& e, const CoordinateMapKey& out_key, const char* op) {
  if (!e.residual) return;
  check(e.residual->key() == out_key, op, "epilogue.residual", "coordinate key ", e.residual->key().str(),
        " differs from the output's ", out_key.str(), "; the residual must live on the output coordinates");
}

cpu::Epilogue cpu_epilogue(const ConvEpilogue& e) {
  return {e.scale ? &*e.scale : nullptr, e.shift ? &*e.shift : nullptr, e.residual ? &e.residual->feats() : nullptr,
          e.relu};
}

cuda::ConvOptions cuda_options(const ConvCall& call) {
  cuda::ConvOptions o;
  o.route = call.route;
  o.allow_tf32 = call.allow_tf32;
  const ConvEpilogue& e = *call.epilogue;
  o.scale = e.scale ? static_cast<const float*>(e.scale->raw()) : nullptr;
  o.shift = e.shift ? static_cast<const float*>(e.shift->raw()) : nullptr;
  o.residual = e.residual ? e.residual->feats().raw() : nullptr;
  o.relu = e.relu;
  return o;
}

// Resolves the target support into a coordinate set of x's manager at `stride`.
std::shared_ptr<const CoordinateSet> resolve_target(const SparseTensor& x, const TargetCoords& target, Int3 stride,
                                                    const char* op) {
  const auto& v = target.value();
  if (const auto* t = std::get_if<SparseTensor>(&v)) {
    check(t->defined(), op, "coordinates", "undefined sparse tensor");
    check(t->manager() == x.manager(), op, "coordinates", "target tensor belongs to manager ", t->key().manager_id,
          " but x belongs to manager ", x.key().manager_id, "; tensors from different managers cannot be combined");
    return t->coordinate_set();
  }
  if (const auto* key = std::get_if<CoordinateMapKey>(&v)) {
    check(x.manager()->owns(*key), op, "coordinates", key->str(), " was not issued by x's manager (",
          x.key().manager_id, ")");
    auto set = x.manager()->find(*key);
    check(set != nullptr, op, "coordinates", key->str(), " refers to coordinates that no longer exist");
    return set;
  }
  const Array& coords = std::get<Array>(v);
  try {
    // Registering through the user-facing constructor applies every coordinate check.
    SparseTensorOptions options;
    options.stride = stride;
    options.manager = x.manager();
    const SparseTensor t = SparseTensor::from_coords(
        coords, Array::empty(Shape{coords.defined() ? coords.dim(0) : 0, 0}, DType::f32, coords.device()), options);
    return t.coordinate_set();
  } catch (const ValueError& e) {
    throw ValueError(lattice::detail::concat("[", op, "] argument 'coordinates': ", e.what()));
  } catch (const TypeError& e) {
    throw TypeError(lattice::detail::concat("[", op, "] argument 'coordinates': ", e.what()));
  }
}

// Route selection on the CPU (SPEC §11): fused GPU routes are not available
// here, so their requests fall back to the general gather-GEMM-scatter route.
ConvRoute select_cpu_route(ConvRoute requested) {
  if (requested == ConvRoute::fetch_on_demand) return requested;
  return ConvRoute::gather_gemm_scatter;
}

// The weight as (K, C_in, C_out) on its device.
Array kernel_major(const Array& weight) {
  return weight.device().is_cpu() ? cpu::to_kernel_major(weight) : cuda::to_kernel_major(weight);
}

OpRecord conv_record(const char* op, ConvRoute route, std::int64_t cin, std::int64_t cout) {
  OpRecord r;
  r.op = op;
  r.route = route_name(route);
  r.channels_in = cin;
  r.channels_out = cout;
  return r;
}

SparseTensor run_conv(const SparseTensor& x, const Array& weight, const std::optional<Array>& bias,
                      const ConvCall& call) {
  const char* op = call.op;
  detail::check_input(x, op);
  validate_kernel_spec(call.spec, op);
  const std::int64_t cin = x.channels();
  const std::int64_t cout = detail::check_weight(weight, call.spec, cin, x.dtype(), x.device(), op);
  detail::check_vector(bias, cout, x.dtype(), x.device(), op, "bias");
  check_epilogue(*call.epilogue, cout, x, op);
  detail::OpTrace trace(x.device());

  const bool has_target = call.target != nullptr && call.target->has_value();
  // Pointwise without a target is a plain feature matrix product on the same identity.
  if (call.kind == RelationKind::forward && call.spec.is_pointwise() && !has_target &&
      (call.route == ConvRoute::automatic || call.route == ConvRoute::pointwise_matmul)) {
    check_residual_key(*call.epilogue, x.key(), op);
    Array out = Array::empty(Shape{x.capacity(), cout}, x.dtype(), x.device());
    if (x.device().is_cpu()) {
      cpu::conv_pointwise(x.feats(), x.rows(), kernel_major(weight), bias, out, cpu_epilogue(*call.epilogue));
    } else {
      cuda::conv_pointwise(x.feats(), x.active_rows(), kernel_major(weight), bias, out, cuda_options(call));
    }
    trace.record(conv_record(op, ConvRoute::pointwise_matmul, cin, cout), x.coordinate_set(), x.coordinate_set(),
                 nullptr, true);
    return x.replace_feats(std::move(out));
  }

  RelationKind kind = call.kind;
  if (has_target) kind = is_transposed_kind(kind) ? RelationKind::target_transposed : RelationKind::target;
  // Stride rules are checked here, before any coordinates are registered.
  const Int3 out_stride = lattice::detail::output_stride(kind, x.stride(), call.spec.stride, op);
  std::shared_ptr<const CoordinateSet> target;
  if (has_target) target = resolve_target(x, *call.target, out_stride, op);

  bool cached = false;
  auto rel = x.manager()->relation(x.coordinate_set(), kind, call.spec, target, op, &cached);
  trace.relation_done(cached);

  const auto output = rel->output();
  check_residual_key(*call.epilogue, output->key(), op);
  Array out = Array::empty(Shape{output->capacity(), cout}, x.dtype(), x.device());
  ConvRoute route;
  if (x.device().is_cpu()) {
    route = select_cpu_route(call.route);
    cpu::conv_relation(*rel, x.feats(), kernel_major(weight), bias, out, route, cpu_epilogue(*call.epilogue));
  } else {
    route = cuda::conv_relation(*rel, x.feats(), kernel_major(weight), bias, out, cuda_options(call));
  }
  trace.record(conv_record(op, route, cin, cout), x.coordinate_set(), output, rel, true);
  return SparseTensor(output, x.manager(), std::move(out));
}

}  // namespace

SparseTensor conv3d(const SparseTensor& x, const Array& weight, const std::optional<Array>& bias,
                    const Conv3dParams& params) {
  const KernelSpec spec{params.kernel_size, params.stride, params.padding, params.dilation};
  return run_conv(
      x, weight, bias,
      {"conv3d", RelationKind::forward, spec, &params.coordinates, params.route, params.allow_tf32, &params.epilogue});
}

SparseTensor subm_conv3d(const SparseTensor& x, const Array& weight, const std::optional<Array>& bias,
                         const SubmConv3dParams& params) {
  const Int3 k = params.kernel_size;
  check(k.x % 2 == 1 && k.y % 2 == 1 && k.z % 2 == 1, "subm_conv3d", "kernel_size", "must be odd on every axis, got ",
        k.str());
  const KernelSpec spec{k, Int3{1}, Int3{0}, params.dilation};
  return run_conv(
      x, weight, bias,
      {"subm_conv3d", RelationKind::submanifold, spec, nullptr, params.route, params.allow_tf32, &params.epilogue});
}

SparseTensor conv_transpose3d(const SparseTensor& x, const Array& weight, const std::optional<Array>& bias,
                              const ConvTranspose3dParams& params) {
  const KernelSpec spec{params.kernel_size, params.stride, params.padding, params.dilation};
  return run_conv(x, weight, bias,
                  {"conv_transpose3d", RelationKind::transposed, spec, &params.coordinates, params.route,
                   params.allow_tf32, &params.epilogue});
}

SparseTensor generative_conv_transpose3d(const SparseTensor& x, const Array& weight, const std::optional<Array>& bias,
                                         const GenerativeConvTranspose3dParams& params) {
  const KernelSpec spec{params.kernel_size, params.stride, Int3{0}, Int3{1}};
  return run_conv(x, weight, bias,
                  {"generative_conv_transpose3d", RelationKind::generative, spec, &params.coordinates, params.route,
                   params.allow_tf32, &params.epilogue});
}

}  // namespace lattice::ops

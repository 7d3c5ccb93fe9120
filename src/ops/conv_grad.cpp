// Convolution VJPs (SPEC §13): check arguments -> look up the forward's
// relation (normally cached by the forward) -> run the backend gradients.
//
//   dx = sum over x's edges of dy[o] W[k]^T  (CPU: per-offset gather-GEMM-add;
//        CUDA: the forward's implicit-GEMM kernels over the reversed map;
//        neither scatters many-to-one)
//   dW = per-offset x^T dy over the kernel CSR (acc dtype, cast at the end)
//   db = column sums of dy over the output's active rows
//
// Normalized forms, Y = N / s + b with N = conv(x, W), D = conv(1, W^2),
// s = sqrt(D + eps): with g = dY / s and dD = -1/2 dY N / s^3,
//   dx = input-grad(g),  dW = weight-grad(x, g) + 2 W ⊙ weight-grad(1, dD).
// N and D are recomputed with the public forward ops (sharing their cached
// relation), exactly as the forward evaluates them.
//
// Targets: dy must live on the output support, so a given target is checked
// against dy's key (tensor or key) or replaced by dy's set (an array target
// would otherwise be registered again under a new key).
#include "lattice/ops/conv_grad.hpp"

#include <algorithm>
#include <cmath>
#include <functional>

#include "backend/cpu/api.hpp"
#include "backend/cuda/api.hpp"
#include "lattice/core/relation.hpp"
#include "ops/common.hpp"
#include "ops/weights.hpp"
#include "relation/build.hpp"

namespace lattice::ops {

namespace {

// A plain forward product conv(in, w) onto `target` (empty: the op's own support).
using Product = std::function<SparseTensor(const SparseTensor&, const Array&, const TargetCoords&)>;

struct GradCall {
  const char* op;
  RelationKind kind;  // forward, submanifold, transposed or generative; target variants derived
  KernelSpec spec;
  const TargetCoords* target;              // null when the op takes none
  const ConvEpilogue* epilogue;            // null when the op has none
  const double* eps;                       // normalized forms only
  bool linear = false;                     // linear(): (C_out, C_in) weight only
  ConvRoute route = ConvRoute::automatic;  // decides the pointwise identity path, as in the forward
};

bool has_epilogue(const ConvEpilogue& e) { return e.scale || e.shift || e.residual || e.relu; }

DType acc_dtype(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }

Array kernel_major(const Array& w) { return w.device().is_cpu() ? cpu::to_kernel_major(w) : cuda::to_kernel_major(w); }

// Checks everything before any work; returns C_out.
std::int64_t check_call(const SparseTensor& x, const Array& weight, const SparseTensor& dy, const GradCall& call) {
  const char* op = call.op;
  detail::check_input(x, op);
  if (call.linear) {
    check(weight.defined(), op, "weight", "undefined array");
    check(weight.ndim() == 2, op, "weight", "must have shape (C_out, C_in), got ", weight.shape().str());
  }
  validate_kernel_spec(call.spec, op);
  const std::int64_t cout = detail::check_weight(weight, call.spec, x.channels(), x.dtype(), x.device(), op);
  if (call.epilogue != nullptr) {
    check(!has_epilogue(*call.epilogue), op, "params.epilogue",
          "a fused epilogue has no VJP; train with the unfused ops (conv, then batch_norm / add / relu)");
  }
  if (call.eps != nullptr) {
    check(std::isfinite(*call.eps) && *call.eps >= 0, op, "eps", "must be finite and >= 0, got ", *call.eps);
  }
  detail::check_input(dy, op, "dy");
  check<TypeError>(dy.dtype() == x.dtype(), op, "dy", "dtype ", dtype_name(dy.dtype()), " differs from x's ",
                   dtype_name(x.dtype()));
  check<DeviceError>(dy.device() == x.device(), op, "dy", "is on ", dy.device().str(), " but x is on ",
                     x.device().str());
  check(dy.manager() == x.manager(), op, "dy", "belongs to manager ", dy.key().manager_id, " but x belongs to ",
        x.key().manager_id);
  check(dy.channels() == cout, op, "dy", "has ", dy.channels(), " channels, the output has ", cout);
  return cout;
}

void check_dy_key(const SparseTensor& dy, const CoordinateMapKey& out_key, const char* op) {
  check(dy.key() == out_key, op, "dy", "coordinate key ", dy.key().str(), " differs from the output's ", out_key.str(),
        "; dy must live on the forward output's coordinates");
}

// The output support of a targeted call: dy's set, after checking the target names it.
std::shared_ptr<const CoordinateSet> target_support(const SparseTensor& x, const SparseTensor& dy,
                                                    const TargetCoords& target, Int3 out_stride, const char* op) {
  const auto& v = target.value();
  if (const auto* t = std::get_if<SparseTensor>(&v)) {
    check(t->defined(), op, "coordinates", "undefined sparse tensor");
    check(t->manager() == x.manager(), op, "coordinates", "target tensor belongs to manager ", t->key().manager_id,
          " but x belongs to manager ", x.key().manager_id);
    check_dy_key(dy, t->key(), op);
  } else if (const auto* key = std::get_if<CoordinateMapKey>(&v)) {
    check(x.manager()->owns(*key), op, "coordinates", key->str(), " was not issued by x's manager (",
          x.key().manager_id, ")");
    check_dy_key(dy, *key, op);
  }
  check(dy.stride() == out_stride, op, "dy", "has stride ", dy.stride().str(), ", the output stride is ",
        out_stride.str());
  return dy.coordinate_set();
}

// Same stride, active rows and coordinates in the same order (a host-facing
// read; only after a relation was rebuilt, never in the steady state).
bool same_rows(const CoordinateSet& a, const CoordinateSet& b) {
  if (a.stride() != b.stride() || a.rows() != b.rows() || a.device() != b.device()) return false;
  const std::int64_t n = a.rows() * 4;
  if (n == 0) return true;
  const Array ha = a.coords().to(Device::cpu()), hb = b.coords().to(Device::cpu());
  return std::equal(ha.data<std::int32_t>(), ha.data<std::int32_t>() + n, hb.data<std::int32_t>());
}

// The relation of the forward, or null for the pointwise identity.
std::shared_ptr<const Relation> forward_relation(const SparseTensor& x, const SparseTensor& dy, const GradCall& call,
                                                 std::shared_ptr<const CoordinateSet>* target_out) {
  const char* op = call.op;
  const bool has_target = call.target != nullptr && call.target->has_value();
  // Same rule as the forward (conv.cpp): a pointwise conv without target keeps x's identity.
  const bool pointwise = call.kind == RelationKind::forward && call.spec.is_pointwise() && !has_target &&
                         (call.route == ConvRoute::automatic || call.route == ConvRoute::pointwise_matmul);
  if (call.linear || pointwise) {
    check_dy_key(dy, x.key(), op);
    return nullptr;
  }
  RelationKind kind = call.kind;
  if (has_target) kind = is_transposed_kind(kind) ? RelationKind::target_transposed : RelationKind::target;
  const Int3 out_stride = lattice::detail::output_stride(kind, x.stride(), call.spec.stride, op);
  std::shared_ptr<const CoordinateSet> target;
  if (has_target) target = target_support(x, dy, *call.target, out_stride, op);
  if (target_out != nullptr) *target_out = target;
  bool cached = true;
  auto rel = x.manager()->relation(x.coordinate_set(), kind, call.spec, target, op, &cached);
  const auto output = rel->output();
  check(output != nullptr, op, "dy", "the forward output coordinates no longer exist");
  // An evicted forward relation is rebuilt under a new output key; its rows
  // are the forward's (the builder is deterministic), so dy on the original
  // support still fits when the coordinates agree row by row.
  if (!cached && dy.key() != output->key() && same_rows(*output, *dy.coordinate_set())) return rel;
  check_dy_key(dy, output->key(), op);
  return rel;
}

// dW (acc dtype, kernel-major) of x and dy over `rel` (null: identity).
Array weight_grad_km(const Relation* rel, const Array& x, const SparseTensor& rows_of, const Array& dy,
                     std::int64_t volume) {
  Array dw = Array::empty(Shape{volume, x.dim(1), dy.dim(1)}, acc_dtype(x.dtype()), x.device());
  if (x.device().is_cpu()) {
    rel ? cpu::conv_weight_grad(*rel, x, dy, dw) : cpu::pointwise_weight_grad(x, dy, rows_of.rows(), dw);
  } else {
    rel ? cuda::conv_weight_grad(*rel, x, dy, dw) : cuda::pointwise_weight_grad(x, dy, rows_of.active_rows(), dw);
  }
  return dw;
}

Array input_grad(const Relation* rel, const SparseTensor& x, const Array& g, const Array& w_km) {
  Array dx = Array::empty(Shape{x.capacity(), x.channels()}, x.dtype(), x.device());
  if (x.device().is_cpu()) {
    rel ? cpu::conv_input_grad(*rel, g, w_km, dx) : cpu::pointwise_input_grad(g, x.rows(), w_km, dx);
  } else {
    rel ? cuda::conv_input_grad(*rel, g, w_km, x.active_rows(), dx)
        : cuda::pointwise_input_grad(g, x.active_rows(), w_km, dx);
  }
  return dx;
}

// The acc-dtype kernel-major gradient in the weight's dtype and layout.
Array finish_weight(const Array& dw_km, const Array& weight) {
  const Array cast = dw_km.dtype() == weight.dtype() ? dw_km : dw_km.astype(weight.dtype());
  return cast.device().is_cpu() ? cpu::from_kernel_major(cast, weight.shape())
                                : cuda::from_kernel_major(cast, weight.shape());
}

Array bias_grad(const SparseTensor& dy) {
  Array db = Array::empty(Shape{dy.channels()}, dy.dtype(), dy.device());
  if (dy.device().is_cpu()) {
    cpu::bias_grad(dy.feats(), dy.rows(), db);
  } else {
    cuda::bias_grad(dy.feats(), dy.active_rows(), db);
  }
  return db;
}

ConvGrads run_backward(const SparseTensor& x, const Array& weight, const SparseTensor& dy, const GradCall& call,
                       const GradRequest& need) {
  check_call(x, weight, dy, call);
  const auto rel = forward_relation(x, dy, call, nullptr);
  ConvGrads out;
  if (!need.input && !need.weight && !need.bias) return out;
  const Array w_km = kernel_major(weight);
  if (need.input) out.input = x.replace_feats(input_grad(rel.get(), x, dy.feats(), w_km));
  if (need.weight) {
    out.weight = finish_weight(weight_grad_km(rel.get(), x.feats(), x, dy.feats(), call.spec.volume()), weight);
  }
  if (need.bias) out.bias = bias_grad(dy);
  return out;
}

ConvGrads run_normalized_backward(const SparseTensor& x, const Array& weight, const SparseTensor& dy,
                                  const GradCall& call, const GradRequest& need, const Product& product) {
  check_call(x, weight, dy, call);
  std::shared_ptr<const CoordinateSet> target_set;
  const auto rel = forward_relation(x, dy, call, &target_set);
  ConvGrads out;
  if (need.bias) out.bias = bias_grad(dy);
  if (!need.input && !need.weight) return out;
  const TargetCoords target = target_set ? TargetCoords(target_set->key()) : TargetCoords();
  const Device dev = x.device();
  const DType acc = acc_dtype(x.dtype());

  // N and D as the forward evaluates them (normalized_conv.cpp).
  const SparseTensor num = product(x, weight, target);
  const SparseTensor ones = x.replace_feats(Array::full(Shape{x.capacity(), x.channels()}, acc, 1.0, dev));
  Array w2 = Array::empty(weight.shape(), acc, dev);
  dev.is_cpu() ? cpu::square_weight(weight, w2) : cuda::square_weight(weight, w2);
  const SparseTensor den = product(ones, w2, target);
  // Both products land on the relation's output (dy's support, or its rebuilt twin after an eviction).
  const CoordinateMapKey out_key = rel->output()->key();
  check(num.key() == out_key && den.key() == out_key, call.op, "dy",
        "the recomputed products left the forward output support");

  Array g = Array::empty(dy.feats().shape(), x.dtype(), dev);
  Array dden = Array::empty(dy.feats().shape(), acc, dev);
  if (dev.is_cpu()) {
    cpu::normalized_grad_terms(dy.feats(), num.feats(), den.feats(), *call.eps, dy.rows(), g, dden);
  } else {
    cuda::normalized_grad_terms(dy.feats(), num.feats(), den.feats(), *call.eps, dy.active_rows(), g, dden);
  }
  const Array w_km = kernel_major(weight);
  if (need.input) out.input = x.replace_feats(input_grad(rel.get(), x, g, w_km));
  if (need.weight) {
    const std::int64_t volume = call.spec.volume();
    const Array dw_num = weight_grad_km(rel.get(), x.feats(), x, g, volume);
    // d/dW of D: every input channel sees the same all-ones input, so one channel suffices.
    const Array ones1 = Array::full(Shape{x.capacity(), 1}, acc, 1.0, dev);
    const Array dw_den = weight_grad_km(rel.get(), ones1, x, dden, volume);
    Array dw = Array::empty(dw_num.shape(), acc, dev);
    if (dev.is_cpu()) {
      cpu::normalized_weight_combine(dw_num, dw_den, w_km, dw);
    } else {
      cuda::normalized_weight_combine(dw_num, dw_den, w_km, dw);
    }
    out.weight = finish_weight(dw, weight);
  }
  return out;
}

}  // namespace

ConvGrads conv3d_backward(const SparseTensor& x, const Array& weight, const SparseTensor& dy,
                          const Conv3dParams& params, const GradRequest& need) {
  const KernelSpec spec{params.kernel_size, params.stride, params.padding, params.dilation};
  GradCall call{"conv3d_backward", RelationKind::forward, spec, &params.coordinates, &params.epilogue, nullptr};
  call.route = params.route;
  return run_backward(x, weight, dy, call, need);
}

ConvGrads subm_conv3d_backward(const SparseTensor& x, const Array& weight, const SparseTensor& dy,
                               const SubmConv3dParams& params, const GradRequest& need) {
  constexpr const char* op = "subm_conv3d_backward";
  const Int3 k = params.kernel_size;
  check(k.x % 2 == 1 && k.y % 2 == 1 && k.z % 2 == 1, op, "kernel_size", "must be odd on every axis, got ", k.str());
  const KernelSpec spec{k, Int3{1}, Int3{0}, params.dilation};
  return run_backward(x, weight, dy, {op, RelationKind::submanifold, spec, nullptr, &params.epilogue, nullptr}, need);
}

ConvGrads conv_transpose3d_backward(const SparseTensor& x, const Array& weight, const SparseTensor& dy,
                                    const ConvTranspose3dParams& params, const GradRequest& need) {
  const KernelSpec spec{params.kernel_size, params.stride, params.padding, params.dilation};
  return run_backward(
      x, weight, dy,
      {"conv_transpose3d_backward", RelationKind::transposed, spec, &params.coordinates, &params.epilogue, nullptr},
      need);
}

ConvGrads generative_conv_transpose3d_backward(const SparseTensor& x, const Array& weight, const SparseTensor& dy,
                                               const GenerativeConvTranspose3dParams& params, const GradRequest& need) {
  const KernelSpec spec{params.kernel_size, params.stride, Int3{0}, Int3{1}};
  return run_backward(x, weight, dy,
                      {"generative_conv_transpose3d_backward", RelationKind::generative, spec, &params.coordinates,
                       &params.epilogue, nullptr},
                      need);
}

ConvGrads normalized_subm_conv3d_backward(const SparseTensor& x, const Array& weight, const SparseTensor& dy,
                                          const NormalizedSubmConv3dParams& params, const GradRequest& need) {
  constexpr const char* op = "normalized_subm_conv3d_backward";
  const Int3 k = params.kernel_size;
  check(k.x % 2 == 1 && k.y % 2 == 1 && k.z % 2 == 1, op, "kernel_size", "must be odd on every axis, got ", k.str());
  const KernelSpec spec{k, Int3{1}, Int3{0}, params.dilation};
  return run_normalized_backward(x, weight, dy, {op, RelationKind::submanifold, spec, nullptr, nullptr, &params.eps},
                                 need, [&](const SparseTensor& in, const Array& w, const TargetCoords&) {
                                   SubmConv3dParams p;
                                   p.kernel_size = params.kernel_size;
                                   p.dilation = params.dilation;
                                   p.route = params.route;
                                   return subm_conv3d(in, w, std::nullopt, p);
                                 });
}

ConvGrads normalized_conv_transpose3d_backward(const SparseTensor& x, const Array& weight, const SparseTensor& dy,
                                               const NormalizedConvTranspose3dParams& params, const GradRequest& need) {
  constexpr const char* op = "normalized_conv_transpose3d_backward";
  const KernelSpec spec{params.kernel_size, params.stride, params.padding, params.dilation};
  return run_normalized_backward(x, weight, dy,
                                 {op, RelationKind::transposed, spec, &params.coordinates, nullptr, &params.eps}, need,
                                 [&](const SparseTensor& in, const Array& w, const TargetCoords& target) {
                                   ConvTranspose3dParams p;
                                   p.kernel_size = params.kernel_size;
                                   p.stride = params.stride;
                                   p.padding = params.padding;
                                   p.dilation = params.dilation;
                                   p.coordinates = target;
                                   p.route = params.route;
                                   return conv_transpose3d(in, w, std::nullopt, p);
                                 });
}

ConvGrads normalized_generative_conv_transpose3d_backward(const SparseTensor& x, const Array& weight,
                                                          const SparseTensor& dy,
                                                          const NormalizedGenerativeConvTranspose3dParams& params,
                                                          const GradRequest& need) {
  constexpr const char* op = "normalized_generative_conv_transpose3d_backward";
  const KernelSpec spec{params.kernel_size, params.stride, Int3{0}, Int3{1}};
  return run_normalized_backward(x, weight, dy,
                                 {op, RelationKind::generative, spec, &params.coordinates, nullptr, &params.eps}, need,
                                 [&](const SparseTensor& in, const Array& w, const TargetCoords& target) {
                                   GenerativeConvTranspose3dParams p;
                                   p.kernel_size = params.kernel_size;
                                   p.stride = params.stride;
                                   p.coordinates = target;
                                   p.route = params.route;
                                   return generative_conv_transpose3d(in, w, std::nullopt, p);
                                 });
}

ConvGrads linear_backward(const SparseTensor& x, const Array& weight, const SparseTensor& dy, const GradRequest& need) {
  const KernelSpec pointwise{Int3{1}, Int3{1}, Int3{0}, Int3{1}};
  GradCall call{"linear_backward", RelationKind::forward, pointwise, nullptr, nullptr, nullptr};
  call.linear = true;
  return run_backward(x, weight, dy, call, need);
}

}  // namespace lattice::ops

// Normalized convolutions (SPEC §5):  Y = conv(X, W) / sqrt(conv(1, W^2) + eps) + b.
//
// Both products are plain, bias-free convolutions through the public front
// ends, so they share one cached relation and every route and weight layout
// of the plain forms. The denominator runs on an all-ones input with the
// squared weights in float32 (float64 for float64 features): squaring in the
// feature dtype would round W^2 to 16 bits, and TF32 is never used for it.
// One elementwise kernel then divides and adds the bias.
#include <cmath>
#include <functional>

#include "backend/cpu/api.hpp"
#include "backend/cuda/api.hpp"
#include "lattice/core/relation.hpp"
#include "lattice/ops/conv.hpp"
#include "ops/common.hpp"
#include "ops/weights.hpp"
#include "relation/build.hpp"

namespace lattice::ops {

namespace {

// The two products: conv(features, weights, target) with the plain op.
using Product = std::function<SparseTensor(const SparseTensor&, const Array&, const TargetCoords&, bool allow_tf32)>;

struct NormalizedCall {
  const char* op;
  RelationKind kind;  // submanifold, transposed or generative
  KernelSpec spec;
  const TargetCoords* target;  // null for submanifold
  bool allow_tf32;
  double eps;
};

SparseTensor run_normalized(const SparseTensor& x, const Array& weight, const std::optional<Array>& bias,
                            const NormalizedCall& call, const Product& product) {
  const char* op = call.op;
  detail::check_input(x, op);
  validate_kernel_spec(call.spec, op);
  const std::int64_t cout = detail::check_weight(weight, call.spec, x.channels(), x.dtype(), x.device(), op);
  detail::check_vector(bias, cout, x.dtype(), x.device(), op, "bias");
  check(std::isfinite(call.eps) && call.eps >= 0, op, "eps", "must be finite and >= 0, got ", call.eps);
  // Resolve an explicit target once, so both products land on the same key
  // (an array target would otherwise be registered twice).
  TargetCoords target;
  std::shared_ptr<const CoordinateSet> target_set;
  if (call.target != nullptr && call.target->has_value()) {
    const Int3 out_stride =
        lattice::detail::output_stride(RelationKind::target_transposed, x.stride(), call.spec.stride, op);
    target_set = detail::resolve_resample_target(x, *call.target, out_stride, op, "coordinates");
    target = TargetCoords(target_set->key());
  } else if (call.kind != RelationKind::submanifold) {
    lattice::detail::output_stride(call.kind, x.stride(), call.spec.stride, op);
  }

  const SparseTensor num = product(x, weight, target, call.allow_tf32);

  const DType acc = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  const SparseTensor ones = x.replace_feats(Array::full(Shape{x.capacity(), x.channels()}, acc, 1.0, x.device()));
  Array w2 = Array::empty(weight.shape(), acc, weight.device());
  if (weight.device().is_cpu()) {
    cpu::square_weight(weight, w2);
  } else {
    cuda::square_weight(weight, w2);
  }
  SparseTensor den = product(ones, w2, target, false);
  if (den.key() != num.key()) {
    // The cached relation was evicted between the two calls and rebuilt with a
    // new support key: evaluate the denominator on the numerator's support.
    den = product(ones, w2, TargetCoords(num.key()), false);
  }

  Array out = Array::empty(num.feats().shape(), x.dtype(), x.device());
  if (x.device().is_cpu()) {
    cpu::normalized_combine(num.feats(), den.feats(), bias, call.eps, num.rows(), out);
  } else {
    cuda::normalized_combine(num.feats(), den.feats(), bias, call.eps, num.active_rows(), out);
  }
  return num.replace_feats(std::move(out));
}

}  // namespace

SparseTensor normalized_subm_conv3d(const SparseTensor& x, const Array& weight, const std::optional<Array>& bias,
                                    const NormalizedSubmConv3dParams& params) {
  constexpr const char* op = "normalized_subm_conv3d";
  const Int3 k = params.kernel_size;
  check(k.x % 2 == 1 && k.y % 2 == 1 && k.z % 2 == 1, op, "kernel_size", "must be odd on every axis, got ", k.str());
  const KernelSpec spec{k, Int3{1}, Int3{0}, params.dilation};
  return run_normalized(x, weight, bias, {op, RelationKind::submanifold, spec, nullptr, params.allow_tf32, params.eps},
                        [&](const SparseTensor& in, const Array& w, const TargetCoords&, bool tf32) {
                          SubmConv3dParams p;
                          p.kernel_size = params.kernel_size;
                          p.dilation = params.dilation;
                          p.route = params.route;
                          p.allow_tf32 = tf32;
                          return subm_conv3d(in, w, std::nullopt, p);
                        });
}

SparseTensor normalized_conv_transpose3d(const SparseTensor& x, const Array& weight, const std::optional<Array>& bias,
                                         const NormalizedConvTranspose3dParams& params) {
  constexpr const char* op = "normalized_conv_transpose3d";
  const KernelSpec spec{params.kernel_size, params.stride, params.padding, params.dilation};
  return run_normalized(x, weight, bias,
                        {op, RelationKind::transposed, spec, &params.coordinates, params.allow_tf32, params.eps},
                        [&](const SparseTensor& in, const Array& w, const TargetCoords& target, bool tf32) {
                          ConvTranspose3dParams p;
                          p.kernel_size = params.kernel_size;
                          p.stride = params.stride;
                          p.padding = params.padding;
                          p.dilation = params.dilation;
                          p.coordinates = target;
                          p.route = params.route;
                          p.allow_tf32 = tf32;
                          return conv_transpose3d(in, w, std::nullopt, p);
                        });
}

SparseTensor normalized_generative_conv_transpose3d(const SparseTensor& x, const Array& weight,
                                                    const std::optional<Array>& bias,
                                                    const NormalizedGenerativeConvTranspose3dParams& params) {
  constexpr const char* op = "normalized_generative_conv_transpose3d";
  const KernelSpec spec{params.kernel_size, params.stride, Int3{0}, Int3{1}};
  return run_normalized(x, weight, bias,
                        {op, RelationKind::generative, spec, &params.coordinates, params.allow_tf32, params.eps},
                        [&](const SparseTensor& in, const Array& w, const TargetCoords& target, bool tf32) {
                          GenerativeConvTranspose3dParams p;
                          p.kernel_size = params.kernel_size;
                          p.stride = params.stride;
                          p.coordinates = target;
                          p.route = params.route;
                          p.allow_tf32 = tf32;
                          return generative_conv_transpose3d(in, w, std::nullopt, p);
                        });
}

}  // namespace lattice::ops

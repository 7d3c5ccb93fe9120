// Front ends of the named feature ops: linear, the named activations, dropout,
// layer_norm and rms_norm. All keep x's coordinate identity (SPEC §1) and
// work on the active rows only.
#include <cmath>

#include "backend/cpu/api.hpp"
#include "backend/cuda/api.hpp"
#include "lattice/core/trace.hpp"
#include "lattice/ops/features.hpp"
#include "ops/common.hpp"
#include "ops/op_trace.hpp"
#include "ops/weights.hpp"

namespace lattice::ops {

namespace {

OpRecord record(const char* op, const char* route, std::int64_t cin, std::int64_t cout) {
  OpRecord r;
  r.op = op;
  r.route = route;
  r.channels_in = cin;
  r.channels_out = cout;
  return r;
}

// An activation under its own name (errors and traces say e.g. "gelu").
SparseTensor named_activation(const SparseTensor& x, const ActivationParams& params, const char* op) {
  detail::check_input(x, op);
  check(std::isfinite(params.negative_slope), op, "negative_slope", "must be finite, got ", params.negative_slope);
  detail::OpTrace trace(x.device());
  Array out = Array::empty(x.feats().shape(), x.dtype(), x.device());
  if (x.device().is_cpu()) {
    cpu::activation(x.feats(), x.rows(), params, out);
  } else {
    cuda::activation(x.feats(), x.active_rows(), params, out);
  }
  trace.record(record(op, "elementwise", x.channels(), x.channels()), x.coordinate_set(), x.coordinate_set(), nullptr,
               false);
  return x.replace_feats(std::move(out));
}

void check_eps(double eps, const char* op) {
  check(std::isfinite(eps) && eps > 0, op, "eps", "must be finite and positive, got ", eps);
}

}  // namespace

SparseTensor linear(const SparseTensor& x, const Array& weight, const std::optional<Array>& bias) {
  constexpr const char* op = "linear";
  detail::check_input(x, op);
  check(weight.defined(), op, "weight", "undefined array");
  check(weight.ndim() == 2, op, "weight", "must have shape (C_out, C_in), got ", weight.shape().str());
  const KernelSpec pointwise{Int3{1}, Int3{1}, Int3{0}, Int3{1}};
  const std::int64_t cin = x.channels();
  const std::int64_t cout = detail::check_weight(weight, pointwise, cin, x.dtype(), x.device(), op);
  detail::check_vector(bias, cout, x.dtype(), x.device(), op, "bias");
  detail::OpTrace trace(x.device());
  // The pointwise convolution route: one feature-matrix product on the same identity.
  Array out = Array::empty(Shape{x.capacity(), cout}, x.dtype(), x.device());
  if (x.device().is_cpu()) {
    cpu::conv_pointwise(x.feats(), x.rows(), cpu::to_kernel_major(weight), bias, out, cpu::Epilogue{});
  } else {
    cuda::conv_pointwise(x.feats(), x.active_rows(), cuda::to_kernel_major(weight), bias, out, cuda::ConvOptions{});
  }
  trace.record(record(op, "pointwise_matmul", cin, cout), x.coordinate_set(), x.coordinate_set(), nullptr, true);
  return x.replace_feats(std::move(out));
}

SparseTensor leaky_relu(const SparseTensor& x, double negative_slope) {
  return named_activation(x, {ActivationKind::leaky_relu, negative_slope}, "leaky_relu");
}
SparseTensor gelu(const SparseTensor& x, bool approximate) {
  return named_activation(x, {approximate ? ActivationKind::gelu_tanh : ActivationKind::gelu}, "gelu");
}
SparseTensor silu(const SparseTensor& x) { return named_activation(x, {ActivationKind::silu}, "silu"); }
SparseTensor sigmoid(const SparseTensor& x) { return named_activation(x, {ActivationKind::sigmoid}, "sigmoid"); }
SparseTensor tanh(const SparseTensor& x) { return named_activation(x, {ActivationKind::tanh}, "tanh"); }
SparseTensor softplus(const SparseTensor& x) { return named_activation(x, {ActivationKind::softplus}, "softplus"); }

SparseTensor dropout(const SparseTensor& x, const DropoutParams& params) {
  constexpr const char* op = "dropout";
  detail::check_input(x, op);
  check(std::isfinite(params.p) && params.p >= 0 && params.p < 1, op, "p", "must be in [0, 1), got ", params.p);
  detail::OpTrace trace(x.device());
  Array out = Array::empty(x.feats().shape(), x.dtype(), x.device());
  const bool identity = !params.training || params.p == 0;
  // Identity still returns fresh features (a copy, as p = 0 would compute), so
  // callers never alias their input. p = 0 keeps every element: scale 1.
  const double p = identity ? 0.0 : params.p;
  if (x.device().is_cpu()) {
    cpu::dropout(x.feats(), x.rows(), p, params.seed, out);
  } else {
    cuda::dropout(x.feats(), x.active_rows(), p, params.seed, out);
  }
  trace.record(record(op, "elementwise", x.channels(), x.channels()), x.coordinate_set(), x.coordinate_set(), nullptr,
               false);
  return x.replace_feats(std::move(out));
}

SparseTensor layer_norm(const SparseTensor& x, const LayerNormArgs& args) {
  constexpr const char* op = "layer_norm";
  detail::check_input(x, op);
  detail::check_vector(args.weight, x.channels(), x.dtype(), x.device(), op, "weight");
  detail::check_vector(args.bias, x.channels(), x.dtype(), x.device(), op, "bias");
  check_eps(args.eps, op);
  check(x.channels() >= 1, op, "x", "needs at least one channel to normalise over, got ", x.channels());
  detail::OpTrace trace(x.device());
  Array out = Array::empty(x.feats().shape(), x.dtype(), x.device());
  if (x.device().is_cpu()) {
    cpu::layer_norm(x.feats(), x.rows(), args.weight, args.bias, args.eps, out);
  } else {
    cuda::layer_norm(x.feats(), x.active_rows(), args.weight, args.bias, args.eps, out);
  }
  trace.record(record(op, "rowwise", x.channels(), x.channels()), x.coordinate_set(), x.coordinate_set(), nullptr,
               false);
  return x.replace_feats(std::move(out));
}

SparseTensor rms_norm(const SparseTensor& x, const RmsNormArgs& args) {
  constexpr const char* op = "rms_norm";
  detail::check_input(x, op);
  detail::check_vector(args.weight, x.channels(), x.dtype(), x.device(), op, "weight");
  check_eps(args.eps, op);
  check(x.channels() >= 1, op, "x", "needs at least one channel to normalise over, got ", x.channels());
  detail::OpTrace trace(x.device());
  Array out = Array::empty(x.feats().shape(), x.dtype(), x.device());
  if (x.device().is_cpu()) {
    cpu::rms_norm(x.feats(), x.rows(), args.weight, args.eps, out);
  } else {
    cuda::rms_norm(x.feats(), x.active_rows(), args.weight, args.eps, out);
  }
  trace.record(record(op, "rowwise", x.channels(), x.channels()), x.coordinate_set(), x.coordinate_set(), nullptr,
               false);
  return x.replace_feats(std::move(out));
}

}  // namespace lattice::ops

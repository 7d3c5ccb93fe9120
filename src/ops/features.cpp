// Feature-op front ends: identity-preserving ops over the active rows.
#include "lattice/ops/features.hpp"

#include <cmath>
#include <vector>

#include "backend/cpu/api.hpp"
#include "backend/cuda/api.hpp"
#include "lattice/core/trace.hpp"
#include "ops/common.hpp"
#include "ops/op_trace.hpp"

namespace lattice::ops {

namespace {

OpRecord feature_record(const char* op, std::int64_t cin, std::int64_t cout) {
  OpRecord r;
  r.op = op;
  r.route = "elementwise";
  r.channels_in = cin;
  r.channels_out = cout;
  return r;
}

}  // namespace

SparseTensor activation(const SparseTensor& x, const ActivationParams& params) {
  constexpr const char* op = "activation";
  detail::check_input(x, op);
  check(static_cast<int>(params.kind) <= static_cast<int>(ActivationKind::softplus), op, "kind",
        "unknown activation kind ", static_cast<int>(params.kind));
  check(std::isfinite(params.negative_slope), op, "negative_slope", "must be finite, got ", params.negative_slope);
  detail::OpTrace trace(x.device());
  Array out = Array::empty(x.feats().shape(), x.dtype(), x.device());
  if (x.device().is_cpu()) {
    cpu::activation(x.feats(), x.rows(), params, out);
  } else {
    cuda::activation(x.feats(), x.active_rows(), params, out);
  }
  trace.record(feature_record(op, x.channels(), x.channels()), x.coordinate_set(), x.coordinate_set(), nullptr, false);
  return x.replace_feats(std::move(out));
}

SparseTensor relu(const SparseTensor& x) { return activation(x, {ActivationKind::relu}); }

BatchNormResult batch_norm(const SparseTensor& x, const BatchNormArgs& args) {
  constexpr const char* op = "batch_norm";
  detail::check_input(x, op);
  const std::int64_t c = x.channels();
  detail::check_batch_norm_args(x, args, op);
  check(std::isfinite(args.momentum) && args.momentum >= 0 && args.momentum <= 1, op, "momentum",
        "must be in [0, 1], got ", args.momentum);
  detail::OpTrace trace(x.device());
  Array out = Array::empty(x.feats().shape(), x.dtype(), x.device());
  Array mean, var, saved;
  if (x.device().is_cpu()) {
    const std::int64_t rows = x.rows();
    if (args.training) {
      check(rows > 1, op, "x", "training mode needs more than one active row per channel, got ", rows);
    }
    cpu::batch_norm(x.feats(), rows, args, out, mean, var);
  } else {
    // The row count lives on the device: with fewer than two rows in training
    // mode the statistics come out NaN rather than stopping the stream.
    cuda::batch_norm(x.feats(), x.active_rows(), args, out, mean, var, args.training ? &saved : nullptr);
  }
  trace.record(feature_record(op, c, c), x.coordinate_set(), x.coordinate_set(), nullptr, false);
  return {x.replace_feats(std::move(out)), std::move(mean), std::move(var), std::move(saved)};
}

std::pair<Array, Array> batch_norm_fold(const BatchNormArgs& args) {
  constexpr const char* op = "batch_norm_fold";
  check(args.running_mean.defined(), op, "running_mean", "undefined array");
  check(args.running_var.defined(), op, "running_var", "undefined array");
  check(args.running_mean.ndim() == 1, op, "running_mean", "must have shape (C,), got ",
        args.running_mean.shape().str());
  const std::int64_t c = args.running_mean.dim(0);
  const Device device = args.running_mean.device();
  auto check_param = [&](const std::optional<Array>& v, const char* arg) {
    if (!v) return;
    check(v->defined(), op, arg, "undefined array");
    check<TypeError>(is_floating(v->dtype()), op, arg, "must be floating, got ", dtype_name(v->dtype()));
    detail::check_vector(v, c, v->dtype(), device, op, arg);
  };
  check_param(args.running_var, "running_var");
  check_param(args.weight, "weight");
  check_param(args.bias, "bias");
  check(std::isfinite(args.eps) && args.eps > 0, op, "eps", "must be positive, got ", args.eps);
  auto host = [&](const std::optional<Array>& v, double fallback) {
    std::vector<double> out(static_cast<std::size_t>(c), fallback);
    if (v) out = v->to(Device::cpu()).astype(DType::f64).to_vector<double>();
    return out;
  };
  const auto mean = host(args.running_mean, 0), var = host(args.running_var, 1);
  const auto gamma = host(args.weight, 1), beta = host(args.bias, 0);
  std::vector<float> scale(static_cast<std::size_t>(c)), shift(static_cast<std::size_t>(c));
  for (std::size_t j = 0; j < scale.size(); ++j) {
    const double s = gamma[j] / std::sqrt(var[j] + args.eps);
    scale[j] = static_cast<float>(s);
    shift[j] = static_cast<float>(beta[j] - mean[j] * s);
  }
  return {Array::from_vector(scale, Shape{c}, device), Array::from_vector(shift, Shape{c}, device)};
}

SparseTensor add(const SparseTensor& a, const SparseTensor& b) {
  constexpr const char* op = "add";
  detail::check_same_key(a, b, op);
  check(a.channels() == b.channels(), op, "b", "has ", b.channels(), " channels but a has ", a.channels());
  detail::OpTrace trace(a.device());
  Array out = Array::empty(a.feats().shape(), a.dtype(), a.device());
  if (a.device().is_cpu()) {
    cpu::add_rows(a.feats(), b.feats(), a.rows(), out);
  } else {
    cuda::add_rows(a.feats(), b.feats(), a.active_rows(), out);
  }
  trace.record(feature_record(op, a.channels(), a.channels()), a.coordinate_set(), a.coordinate_set(), nullptr, false);
  return a.replace_feats(std::move(out));
}

SparseTensor cat(const SparseTensor& a, const SparseTensor& b) {
  constexpr const char* op = "cat";
  detail::check_same_key(a, b, op);
  detail::OpTrace trace(a.device());
  Array out = Array::empty(Shape{a.capacity(), a.channels() + b.channels()}, a.dtype(), a.device());
  if (a.device().is_cpu()) {
    cpu::cat_channels(a.feats(), b.feats(), a.rows(), out);
  } else {
    cuda::cat_channels(a.feats(), b.feats(), a.active_rows(), out);
  }
  trace.record(feature_record(op, a.channels() + b.channels(), out.dim(1)), a.coordinate_set(), a.coordinate_set(),
               nullptr, false);
  return a.replace_feats(std::move(out));
}

}  // namespace lattice::ops

// Feature-op front ends: identity-preserving ops over the active rows.
#include "lattice/ops/features.hpp"

#include <cmath>

#include "backend/cpu/api.hpp"
#include "lattice/core/trace.hpp"
#include "ops/common.hpp"

namespace lattice::ops {

namespace {

void require_cpu(const SparseTensor& x, const char* op) {
  check<DeviceError>(x.device().is_cpu(), op, "x", "features on ", x.device().str(),
                     " need the CUDA backend, which this build does not have");
}

void record_elementwise(const char* op, std::int64_t rows, std::int64_t cin, std::int64_t cout, double ms) {
  OpRecord r;
  r.op = op;
  r.route = "cpu";
  r.rows_in = rows;
  r.rows_out = rows;
  r.channels_in = cin;
  r.channels_out = cout;
  r.total_ms = ms;
  trace_record(std::move(r));
}

}  // namespace

SparseTensor activation(const SparseTensor& x, const ActivationParams& params) {
  const detail::Stopwatch clock;
  constexpr const char* op = "activation";
  detail::check_input(x, op);
  check(static_cast<int>(params.kind) <= static_cast<int>(ActivationKind::softplus), op, "kind",
        "unknown activation kind ", static_cast<int>(params.kind));
  check(std::isfinite(params.negative_slope), op, "negative_slope", "must be finite, got ", params.negative_slope);
  require_cpu(x, op);
  Array out = Array::empty(x.feats().shape(), x.dtype(), x.device());
  cpu::activation(x.feats(), x.rows(), params, out);
  if (tracing()) record_elementwise(op, x.rows(), x.channels(), x.channels(), clock.ms());
  return x.replace_feats(std::move(out));
}

SparseTensor relu(const SparseTensor& x) { return activation(x, {ActivationKind::relu}); }

BatchNormResult batch_norm(const SparseTensor& x, const BatchNormArgs& args) {
  const detail::Stopwatch clock;
  constexpr const char* op = "batch_norm";
  detail::check_input(x, op);
  const std::int64_t c = x.channels();
  auto check_param = [&](const std::optional<Array>& v, const char* arg) {
    if (!v) return;
    const DType want = v->defined() && v->dtype() == DType::f32 ? DType::f32 : x.dtype();
    detail::check_vector(v, c, want, x.device(), op, arg);
  };
  check_param(args.weight, "weight");
  check_param(args.bias, "bias");
  check(args.running_mean.defined(), op, "running_mean", "undefined array");
  check(args.running_var.defined(), op, "running_var", "undefined array");
  check_param(args.running_mean, "running_mean");
  check_param(args.running_var, "running_var");
  check(std::isfinite(args.momentum) && args.momentum >= 0 && args.momentum <= 1, op, "momentum",
        "must be in [0, 1], got ", args.momentum);
  check(std::isfinite(args.eps) && args.eps > 0, op, "eps", "must be positive, got ", args.eps);
  require_cpu(x, op);
  const std::int64_t rows = x.rows();
  if (args.training) {
    check(rows > 1, op, "x", "training mode needs more than one active row per channel, got ", rows);
  }
  Array out = Array::empty(x.feats().shape(), x.dtype(), x.device());
  Array mean, var;
  cpu::batch_norm(x.feats(), rows, args, out, mean, var);
  if (tracing()) record_elementwise(op, rows, c, c, clock.ms());
  return {x.replace_feats(std::move(out)), std::move(mean), std::move(var)};
}

SparseTensor add(const SparseTensor& a, const SparseTensor& b) {
  const detail::Stopwatch clock;
  constexpr const char* op = "add";
  detail::check_same_key(a, b, op);
  check(a.channels() == b.channels(), op, "b", "has ", b.channels(), " channels but a has ", a.channels());
  require_cpu(a, op);
  Array out = Array::empty(a.feats().shape(), a.dtype(), a.device());
  cpu::add_rows(a.feats(), b.feats(), a.rows(), out);
  if (tracing()) record_elementwise(op, a.rows(), a.channels(), a.channels(), clock.ms());
  return a.replace_feats(std::move(out));
}

SparseTensor cat(const SparseTensor& a, const SparseTensor& b) {
  const detail::Stopwatch clock;
  constexpr const char* op = "cat";
  detail::check_same_key(a, b, op);
  require_cpu(a, op);
  Array out = Array::empty(Shape{a.capacity(), a.channels() + b.channels()}, a.dtype(), a.device());
  cpu::cat_channels(a.feats(), b.feats(), a.rows(), out);
  if (tracing()) record_elementwise(op, a.rows(), a.channels() + b.channels(), out.dim(1), clock.ms());
  return a.replace_feats(std::move(out));
}

}  // namespace lattice::ops

// Front ends of the feature-op VJPs (SPEC §13): validate, then one backend
// call per gradient. Sparse algebra and row subsets are composed from the row
// maps of src/ops/algebra.cpp (reindex_sparse) plus one row-aligned
// elementwise kernel; dropout's VJP is the forward itself applied to dy (the
// same counter-based mask and scale).
#include "lattice/ops/features_grad.hpp"

#include <cmath>

#include "backend/cpu/api.hpp"
#include "backend/cuda/api.hpp"
#include "ops/common.hpp"

namespace lattice::ops {

namespace detail {
// Defined in src/ops/algebra.cpp: same manager, device and stride.
void check_set_pair(const SparseTensor& a, const SparseTensor& b, const char* op, const char* a_name,
                    const char* b_name);
}  // namespace detail

namespace {

// dy is a floating tensor with x's key, dtype, device and `channels` channels.
void check_grad(const SparseTensor& x, const SparseTensor& dy, std::int64_t channels, const char* op,
                const char* x_name = "x") {
  detail::check_input(dy, op, "dy");
  check(x.key() == dy.key(), op, "dy", "coordinate key ", dy.key().str(), " differs from ", x_name, "'s key ",
        x.key().str(), "; dy must lie on the forward output's coordinates");
  check<TypeError>(dy.dtype() == x.dtype(), op, "dy", "dtype ", dtype_name(dy.dtype()), " differs from ", x_name, "'s ",
                   dtype_name(x.dtype()));
  check<DeviceError>(dy.device() == x.device(), op, "dy", "is on ", dy.device().str(), " but ", x_name, " is on ",
                     x.device().str());
  check(dy.channels() == channels, op, "dy", "has ", dy.channels(), " channels, expected ", channels);
}

void check_eps(double eps, const char* op) {
  check(std::isfinite(eps) && eps > 0, op, "eps", "must be finite and positive, got ", eps);
}

// Gradient storage on x's key. The kernels write every active row; rows past
// the count are capacity, never read and (on CUDA) never written, as for
// forward outputs: zero-filling them would cost a full pass over the first
// level's capacity at every level of a network.
Array grad_array(const Shape& shape, DType dtype, Device device) { return Array::empty(shape, dtype, device); }

// The feature dtype's binary VJP on row-aligned (a, b, dy); returns (ga, gb).
std::pair<Array, Array> binary_rows_backward(const Array& a, const Array& b, const SparseTensor& dy, BinaryOp op) {
  Array ga = grad_array(dy.feats().shape(), dy.dtype(), dy.device());
  Array gb = grad_array(dy.feats().shape(), dy.dtype(), dy.device());
  if (dy.device().is_cpu()) {
    cpu::binary_backward_rows(a, b, dy.feats(), dy.rows(), op, ga, gb);
  } else {
    cuda::binary_backward_rows(a, b, dy.feats(), dy.active_rows(), op, ga, gb);
  }
  return {std::move(ga), std::move(gb)};
}

}  // namespace

SparseTensor activation_backward(const SparseTensor& x, const SparseTensor& dy, const ActivationParams& params) {
  constexpr const char* op = "activation_backward";
  detail::check_input(x, op);
  check_grad(x, dy, x.channels(), op);
  check(static_cast<int>(params.kind) <= static_cast<int>(ActivationKind::softplus), op, "kind",
        "unknown activation kind ", static_cast<int>(params.kind));
  check(std::isfinite(params.negative_slope), op, "negative_slope", "must be finite, got ", params.negative_slope);
  Array dx = grad_array(x.feats().shape(), x.dtype(), x.device());
  if (x.device().is_cpu()) {
    cpu::activation_backward(x.feats(), dy.feats(), x.rows(), params, dx);
  } else {
    cuda::activation_backward(x.feats(), dy.feats(), x.active_rows(), params, dx);
  }
  return x.replace_feats(std::move(dx));
}

SparseTensor dropout_backward(const SparseTensor& dy, const DropoutParams& params) {
  constexpr const char* op = "dropout_backward";
  detail::check_input(dy, op, "dy");
  check(std::isfinite(params.p) && params.p >= 0 && params.p < 1, op, "p", "must be in [0, 1), got ", params.p);
  // dropout is y = x * mask * scale elementwise: its VJP is the same map on dy.
  const double p = !params.training ? 0.0 : params.p;
  Array dx = grad_array(dy.feats().shape(), dy.dtype(), dy.device());
  if (dy.device().is_cpu()) {
    cpu::dropout(dy.feats(), dy.rows(), p, params.seed, dx);
  } else {
    cuda::dropout(dy.feats(), dy.active_rows(), p, params.seed, dx);
  }
  return dy.replace_feats(std::move(dx));
}

NormGrads batch_norm_backward(const SparseTensor& x, const SparseTensor& dy, const BatchNormArgs& args) {
  constexpr const char* op = "batch_norm_backward";
  detail::check_input(x, op);
  const std::int64_t c = x.channels();
  check_grad(x, dy, c, op);
  detail::check_batch_norm_args(x, args, op);
  if (args.saved_stats) {
    const Array& s = *args.saved_stats;
    check(s.defined() && s.ndim() == 2 && s.dim(0) == 2 && s.dim(1) == c, op, "saved_stats",
          "must be the forward's (2, ", c, ") statistics, got ", s.defined() ? s.shape().str() : "undefined");
    check<TypeError>(s.dtype() == DType::f64, op, "saved_stats", "must be float64, got ", dtype_name(s.dtype()));
    check<DeviceError>(s.device() == x.device(), op, "saved_stats", "is on ", s.device().str(), " but x is on ",
                       x.device().str());
  }
  NormGrads grads;
  Array dx = grad_array(x.feats().shape(), x.dtype(), x.device());
  Array dw, db;
  Array* pw = args.weight ? &dw : nullptr;
  Array* pb = args.bias ? &db : nullptr;
  if (x.device().is_cpu()) {
    if (args.training) {
      check(x.rows() > 1, op, "x", "training mode needs more than one active row per channel, got ", x.rows());
    }
    cpu::batch_norm_backward(x.feats(), dy.feats(), x.rows(), args, dx, pw, pb);
  } else {
    // As the forward: with fewer than two rows in training the result is NaN.
    cuda::batch_norm_backward(x.feats(), dy.feats(), x.active_rows(), args, dx, pw, pb);
  }
  grads.input = x.replace_feats(std::move(dx));
  if (pw != nullptr) grads.weight = std::move(dw);
  if (pb != nullptr) grads.bias = std::move(db);
  return grads;
}

namespace {

NormGrads row_norm_backward(const SparseTensor& x, const SparseTensor& dy, const std::optional<Array>& weight,
                            const std::optional<Array>& bias, double eps, bool center, const char* op) {
  detail::check_input(x, op);
  check_grad(x, dy, x.channels(), op);
  detail::check_vector(weight, x.channels(), x.dtype(), x.device(), op, "weight");
  detail::check_vector(bias, x.channels(), x.dtype(), x.device(), op, "bias");
  check_eps(eps, op);
  check(x.channels() >= 1, op, "x", "needs at least one channel to normalise over, got ", x.channels());
  Array dx = grad_array(x.feats().shape(), x.dtype(), x.device());
  Array dw, db;
  Array* pw = weight ? &dw : nullptr;
  Array* pb = bias ? &db : nullptr;
  if (x.device().is_cpu()) {
    cpu::row_norm_backward(x.feats(), dy.feats(), x.rows(), weight, eps, center, dx, pw, pb);
  } else {
    cuda::row_norm_backward(x.feats(), dy.feats(), x.active_rows(), weight, eps, center, dx, pw, pb);
  }
  NormGrads grads;
  grads.input = x.replace_feats(std::move(dx));
  if (pw != nullptr) grads.weight = std::move(dw);
  if (pb != nullptr) grads.bias = std::move(db);
  return grads;
}

}  // namespace

NormGrads layer_norm_backward(const SparseTensor& x, const SparseTensor& dy, const LayerNormArgs& args) {
  return row_norm_backward(x, dy, args.weight, args.bias, args.eps, true, "layer_norm_backward");
}

NormGrads rms_norm_backward(const SparseTensor& x, const SparseTensor& dy, const RmsNormArgs& args) {
  return row_norm_backward(x, dy, args.weight, std::nullopt, args.eps, false, "rms_norm_backward");
}

std::pair<SparseTensor, SparseTensor> cat_backward(const SparseTensor& a, const SparseTensor& b,
                                                   const SparseTensor& dy) {
  constexpr const char* op = "cat_backward";
  detail::check_same_key(a, b, op);
  check_grad(a, dy, a.channels() + b.channels(), op, "a");
  Array ga = grad_array(a.feats().shape(), a.dtype(), a.device());
  Array gb = grad_array(b.feats().shape(), b.dtype(), b.device());
  if (a.device().is_cpu()) {
    cpu::split_channels(dy.feats(), a.rows(), ga, gb);
  } else {
    cuda::split_channels(dy.feats(), a.active_rows(), ga, gb);
  }
  return {a.replace_feats(std::move(ga)), b.replace_feats(std::move(gb))};
}

BinaryGrads sparse_binary_backward(BinaryOp op, const SparseTensor& lhs, const SparseTensor& rhs,
                                   const SparseTensor& dy, const BinaryParams& params) {
  constexpr const char* name = "sparse_binary_backward";
  check(static_cast<int>(op) <= static_cast<int>(BinaryOp::minimum), name, "op", "unknown binary op ",
        static_cast<int>(op), " (expected add, sub, mul, maximum or minimum)");
  const Join join = params.join.value_or(default_join(op));
  check(static_cast<int>(join) <= static_cast<int>(Join::left), name, "join", "unknown join ", static_cast<int>(join),
        " (expected inner, outer or left)");
  detail::check_set_pair(lhs, rhs, name, "lhs", "rhs");
  check<TypeError>(lhs.dtype() == rhs.dtype(), name, "rhs", "dtype ", dtype_name(rhs.dtype()), " differs from lhs's ",
                   dtype_name(lhs.dtype()));
  check(lhs.channels() == rhs.channels(), name, "rhs", "has ", rhs.channels(), " channels but lhs has ",
        lhs.channels());
  const bool same_key = lhs.key() == rhs.key();
  if (same_key || join == Join::left) {
    // The forward output is lhs's key (same-key fast path and left joins).
    check_grad(lhs, dy, lhs.channels(), name, "lhs");
  } else {
    detail::check_set_pair(lhs, dy, name, "lhs", "dy");
    detail::check_input(dy, name, "dy");
    check<TypeError>(dy.dtype() == lhs.dtype(), name, "dy", "dtype ", dtype_name(dy.dtype()), " differs from lhs's ",
                     dtype_name(lhs.dtype()));
    check(dy.channels() == lhs.channels(), name, "dy", "has ", dy.channels(), " channels, expected ", lhs.channels());
  }
  const bool needs_values = op == BinaryOp::mul || op == BinaryOp::maximum || op == BinaryOp::minimum;
  if (same_key) {
    // Row-aligned: join and fills do not apply (as in the forward).
    auto [ga, gb] = binary_rows_backward(lhs.feats(), rhs.feats(), dy, op);
    return {lhs.replace_feats(std::move(ga)), rhs.replace_feats(std::move(gb))};
  }
  // Each input row feeds at most one output row, so the VJP is: both operands
  // as seen by each output row (their rows or the constant fills, matched by
  // coordinate), the row-aligned VJP on dy's rows, then each side's gradient
  // gathered back onto its own rows (0 where the output did not use a row).
  Array a = dy.feats(), b = dy.feats();  // unread for add / sub
  if (needs_values) {
    a = reindex_sparse(lhs, dy, params.lhs_fill).feats();
    b = reindex_sparse(rhs, dy, params.rhs_fill).feats();
  }
  auto [ga, gb] = binary_rows_backward(a, b, dy, op);
  SparseTensor dl = reindex_sparse(dy.replace_feats(std::move(ga)), lhs, 0.0);
  SparseTensor dr = reindex_sparse(dy.replace_feats(std::move(gb)), rhs, 0.0);
  return {std::move(dl), std::move(dr)};
}

SparseTensor row_subset_backward(const SparseTensor& x, const SparseTensor& dy) {
  constexpr const char* op = "row_subset_backward";
  detail::check_set_pair(x, dy, op, "x", "dy");
  check<TypeError>(dy.dtype() == x.dtype(), op, "dy", "dtype ", dtype_name(dy.dtype()), " differs from x's ",
                   dtype_name(x.dtype()));
  check(dy.channels() == x.channels(), op, "dy", "has ", dy.channels(), " channels, expected ", x.channels());
  if (x.key() == dy.key()) return dy.replace_feats(dy.feats().clone());  // never alias dy
  if (x.device().is_cpu()) {
    // Every row of dy must be a row of x (host check; on CUDA the rows of dy
    // that x lacks are dropped without a host read).
    const Array where = cpu::match_rows(*x.coordinate_set(), *dy.coordinate_set(), op);
    const std::int32_t* w = where.data<std::int32_t>();
    const std::int64_t n = dy.rows();
    for (std::int64_t i = 0; i < n; ++i) {
      check(w[i] >= 0, op, "dy", "row ", i,
            " has a coordinate that x does not have; dy must lie on a subset of x's "
            "coordinates");
    }
  }
  return reindex_sparse(dy, x, 0.0);
}

}  // namespace lattice::ops

// Differentiable wrappers of the feature ops, sparse algebra and row subsets:
// each runs the forward op and records the VJP from ops/features_grad.hpp and
// ops/conv_grad.hpp (linear). Closures capture values (arrays share buffers,
// so this is cheap) rather than Variables, so a graph never keeps itself alive.
#include <utility>

#include "autograd/args.hpp"
#include "lattice/autograd.hpp"
#include "lattice/core/error.hpp"
#include "lattice/ops/conv_grad.hpp"
#include "lattice/ops/features_grad.hpp"
#include "lattice/ops/rows.hpp"

namespace lattice::autograd {

namespace {

using detail::Grads;
using detail::sparse_arg;

using detail::optional_array;

std::optional<Value> sparse_grad(std::optional<SparseTensor> g) {
  if (!g) return std::nullopt;
  return Value{std::move(*g)};
}

std::optional<Value> dense_grad(std::optional<Array> g) {
  if (!g) return std::nullopt;
  return Value{std::move(*g)};
}

// A unary sparse -> sparse function whose VJP needs only dy (and constants).
template <class Vjp>
Variable unary(const char* name, const Variable& x, SparseTensor y, Vjp vjp) {
  return apply(name, Value{std::move(y)}, {x},
               [vjp = std::move(vjp)](const Value& dy) -> Grads { return {Value{vjp(std::get<SparseTensor>(dy))}}; });
}

}  // namespace

Variable linear(const Variable& x, const Variable& weight, const Variable& bias) {
  constexpr const char* op = "autograd.linear";
  const SparseTensor& xs = sparse_arg(x, op, "x");
  const std::optional<Array> w = optional_array(weight, op, "weight");
  check(w.has_value(), op, "weight", "undefined variable");
  const std::optional<Array> b = optional_array(bias, op, "bias");
  SparseTensor y = ops::linear(xs, *w, b);
  const ops::GradRequest need{x.requires_grad(), weight.requires_grad(), bias.requires_grad()};
  return apply(op, Value{std::move(y)}, {x, weight, bias}, [xs, w = *w, need](const Value& dy) -> Grads {
    ops::ConvGrads g = ops::linear_backward(xs, w, std::get<SparseTensor>(dy), need);
    return {sparse_grad(std::move(g.input)), dense_grad(std::move(g.weight)), dense_grad(std::move(g.bias))};
  });
}

Variable activation(const Variable& x, const ops::ActivationParams& params) {
  const SparseTensor& xs = sparse_arg(x, "autograd.activation", "x");
  return unary("autograd.activation", x, ops::activation(xs, params),
               [xs, params](const SparseTensor& dy) { return ops::activation_backward(xs, dy, params); });
}

Variable relu(const Variable& x) { return activation(x, {ops::ActivationKind::relu}); }
Variable leaky_relu(const Variable& x, double negative_slope) {
  return activation(x, {ops::ActivationKind::leaky_relu, negative_slope});
}
Variable gelu(const Variable& x, bool approximate) {
  return activation(x, {approximate ? ops::ActivationKind::gelu_tanh : ops::ActivationKind::gelu});
}
Variable silu(const Variable& x) { return activation(x, {ops::ActivationKind::silu}); }
Variable sigmoid(const Variable& x) { return activation(x, {ops::ActivationKind::sigmoid}); }
Variable tanh(const Variable& x) { return activation(x, {ops::ActivationKind::tanh}); }
Variable softplus(const Variable& x) { return activation(x, {ops::ActivationKind::softplus}); }

Variable dropout(const Variable& x, const ops::DropoutParams& params) {
  const SparseTensor& xs = sparse_arg(x, "autograd.dropout", "x");
  return unary("autograd.dropout", x, ops::dropout(xs, params),
               [params](const SparseTensor& dy) { return ops::dropout_backward(dy, params); });
}

namespace {

// Shared tail of the three norms: inputs {x, weight, bias}.
template <class Args, class Backward>
Variable record_norm(const char* name, const Variable& x, const Variable& weight, const Variable& bias, SparseTensor y,
                     Args args, Backward vjp) {
  const SparseTensor xs = x.sparse();
  return apply(name, Value{std::move(y)}, {x, weight, bias},
               [xs, args = std::move(args), vjp](const Value& dy) -> Grads {
                 ops::NormGrads g = vjp(xs, std::get<SparseTensor>(dy), args);
                 return {Value{std::move(g.input)}, dense_grad(std::move(g.weight)), dense_grad(std::move(g.bias))};
               });
}

}  // namespace

BatchNormOutput batch_norm(const Variable& x, const Variable& weight, const Variable& bias,
                           const ops::BatchNormArgs& args) {
  constexpr const char* op = "autograd.batch_norm";
  const SparseTensor& xs = sparse_arg(x, op, "x");
  ops::BatchNormArgs a = args;
  a.weight = optional_array(weight, op, "weight");
  a.bias = optional_array(bias, op, "bias");
  ops::BatchNormResult r = ops::batch_norm(xs, a);
  if (r.saved_stats.defined()) a.saved_stats = r.saved_stats;  // the VJP reuses the batch statistics
  Variable out = record_norm(op, x, weight, bias, std::move(r.output), a,
                             [](const SparseTensor& xv, const SparseTensor& dy, const ops::BatchNormArgs& aa) {
                               return ops::batch_norm_backward(xv, dy, aa);
                             });
  return {std::move(out), std::move(r.running_mean), std::move(r.running_var)};
}

Variable layer_norm(const Variable& x, const Variable& weight, const Variable& bias, double eps) {
  constexpr const char* op = "autograd.layer_norm";
  const SparseTensor& xs = sparse_arg(x, op, "x");
  ops::LayerNormArgs a{optional_array(weight, op, "weight"), optional_array(bias, op, "bias"), eps};
  SparseTensor y = ops::layer_norm(xs, a);
  return record_norm(op, x, weight, bias, std::move(y), a,
                     [](const SparseTensor& xv, const SparseTensor& dy, const ops::LayerNormArgs& aa) {
                       return ops::layer_norm_backward(xv, dy, aa);
                     });
}

Variable rms_norm(const Variable& x, const Variable& weight, double eps) {
  constexpr const char* op = "autograd.rms_norm";
  const SparseTensor& xs = sparse_arg(x, op, "x");
  ops::RmsNormArgs a{optional_array(weight, op, "weight"), eps};
  SparseTensor y = ops::rms_norm(xs, a);
  return record_norm(op, x, weight, Variable{}, std::move(y), a,
                     [](const SparseTensor& xv, const SparseTensor& dy, const ops::RmsNormArgs& aa) {
                       return ops::rms_norm_backward(xv, dy, aa);
                     });
}

Variable add(const Variable& a, const Variable& b) {
  constexpr const char* op = "autograd.add";
  SparseTensor y = ops::add(sparse_arg(a, op, "a"), sparse_arg(b, op, "b"));
  // Same key: y = a + b row by row, so both gradients are dy itself.
  return apply(op, Value{std::move(y)}, {a, b}, [](const Value& dy) -> Grads { return {dy, dy}; });
}

Variable sparse_binary(ops::BinaryOp bop, const Variable& lhs, const Variable& rhs, const ops::BinaryParams& params) {
  constexpr const char* op = "autograd.sparse_binary";
  const SparseTensor& l = sparse_arg(lhs, op, "lhs");
  const SparseTensor& r = sparse_arg(rhs, op, "rhs");
  SparseTensor y = ops::sparse_binary(bop, l, r, params);
  return apply(op, Value{std::move(y)}, {lhs, rhs}, [bop, l, r, params](const Value& dy) -> Grads {
    ops::BinaryGrads g = ops::sparse_binary_backward(bop, l, r, std::get<SparseTensor>(dy), params);
    return {Value{std::move(g.lhs)}, Value{std::move(g.rhs)}};
  });
}

Variable cat(const Variable& a, const Variable& b) {
  constexpr const char* op = "autograd.cat";
  const SparseTensor& as = sparse_arg(a, op, "a");
  const SparseTensor& bs = sparse_arg(b, op, "b");
  SparseTensor y = ops::cat(as, bs);
  return apply(op, Value{std::move(y)}, {a, b}, [as, bs](const Value& dy) -> Grads {
    auto [ga, gb] = ops::cat_backward(as, bs, std::get<SparseTensor>(dy));
    return {Value{std::move(ga)}, Value{std::move(gb)}};
  });
}

namespace {

Variable row_subset(const char* name, const Variable& x, SparseTensor y) {
  const SparseTensor xs = x.sparse();
  return unary(name, x, std::move(y), [xs](const SparseTensor& dy) { return ops::row_subset_backward(xs, dy); });
}

}  // namespace

Variable prune(const Variable& x, const Array& rows) {
  return row_subset("autograd.prune", x, ops::prune(sparse_arg(x, "autograd.prune", "x"), rows));
}
Variable prune_mask(const Variable& x, const Array& mask) {
  return row_subset("autograd.prune_mask", x, ops::prune_mask(sparse_arg(x, "autograd.prune_mask", "x"), mask));
}
Variable crop(const Variable& x, Int3 min_coord, Int3 max_coord) {
  return row_subset("autograd.crop", x, ops::crop(sparse_arg(x, "autograd.crop", "x"), min_coord, max_coord));
}
Variable topk_rows(const Variable& x, const Array& counts, double rho) {
  return row_subset("autograd.topk_rows", x, ops::topk_rows(sparse_arg(x, "autograd.topk_rows", "x"), counts, rho));
}

Variable cross_entropy(const Variable& logits, const Array& labels, const nn::CrossEntropyParams& params) {
  constexpr const char* op = "autograd.cross_entropy";
  check(logits.defined(), op, "logits", "undefined variable");
  if (logits.is_sparse()) {
    const SparseTensor l = logits.sparse();
    Array loss = nn::cross_entropy(l, labels, params);
    return apply(op, Value{std::move(loss)}, {logits}, [l, labels, params](const Value& dy) -> Grads {
      return {Value{nn::cross_entropy_backward(l, labels, params, std::get<Array>(dy))}};
    });
  }
  const Array l = logits.array();
  Array loss = nn::cross_entropy(l, labels, params);
  return apply(op, Value{std::move(loss)}, {logits}, [l, labels, params](const Value& dy) -> Grads {
    return {Value{nn::cross_entropy_backward(l, labels, params, std::get<Array>(dy))}};
  });
}

}  // namespace lattice::autograd

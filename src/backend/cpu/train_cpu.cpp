// CPU training kernels: optimizer updates, cross-entropy and confusion counts
// (see api_train.hpp). 16-bit storage computes in float32 and rounds once on
// store; float64 computes in float64. The build never contracts a * b + c
// (-ffp-contract=off), so backend/cuda/train.cu, which uses explicitly
// rounded operations in the same order, reproduces the updates bit for bit.
#include <cmath>
#include <cstdint>
#include <limits>

#include "backend/cpu/api_train.hpp"
#include "backend/cpu/dispatch.hpp"

namespace lattice::cpu {

void sgd_update(const Array& value, const Array& grad, const Array& momentum, const lattice::detail::SgdUpdate& u) {
  visit_float(value.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    T* p = static_cast<T*>(value.raw());
    const T* g = static_cast<const T*>(grad.raw());
    A* buf = u.momentum != 0.0 ? static_cast<A*>(momentum.raw()) : nullptr;
    const A lr = static_cast<A>(u.lr), wd = static_cast<A>(u.weight_decay), mom = static_cast<A>(u.momentum);
    const A keep = static_cast<A>(u.one_minus_dampening);
    const std::int64_t n = value.numel();
    for (std::int64_t i = 0; i < n; ++i) {
      A gi = load(g[i]);
      A pi = load(p[i]);
      if (u.weight_decay != 0.0) gi = gi + wd * pi;
      if (buf != nullptr) {
        const A b = u.first ? gi : mom * buf[i] + keep * gi;
        buf[i] = b;
        gi = u.nesterov ? gi + mom * b : b;
      }
      pi = pi - lr * gi;
      p[i] = store<T>(pi);
    }
  });
}

void adamw_update(const Array& value, const Array& grad, const Array& exp_avg, const Array& exp_avg_sq,
                  const lattice::detail::AdamWUpdate& u) {
  visit_float(value.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    T* p = static_cast<T*>(value.raw());
    const T* g = static_cast<const T*>(grad.raw());
    A* m = static_cast<A*>(exp_avg.raw());
    A* v = static_cast<A*>(exp_avg_sq.raw());
    const A decay = static_cast<A>(u.decay), b1 = static_cast<A>(u.beta1), c1 = static_cast<A>(u.one_minus_beta1);
    const A b2 = static_cast<A>(u.beta2), c2 = static_cast<A>(u.one_minus_beta2);
    const A step_size = static_cast<A>(u.step_size), sqrt_bias2 = static_cast<A>(u.sqrt_bias2);
    const A eps = static_cast<A>(u.eps);
    const std::int64_t n = value.numel();
    for (std::int64_t i = 0; i < n; ++i) {
      const A gi = load(g[i]);
      A pi = load(p[i]) * decay;
      const A mi = b1 * m[i] + c1 * gi;
      const A vi = b2 * v[i] + (c2 * gi) * gi;
      m[i] = mi;
      v[i] = vi;
      const A denom = std::sqrt(vi) / sqrt_bias2 + eps;
      pi = pi - step_size * (mi / denom);
      p[i] = store<T>(pi);
    }
  });
}

namespace {

// Rows to process: the active count when given, else every row.
std::int64_t row_count(const Array& logits, const Array& count) {
  if (!count.defined()) return logits.dim(0);
  const std::int64_t n = count.data<std::int32_t>()[0];
  return n < 0 ? 0 : (n > logits.dim(0) ? logits.dim(0) : n);
}

// Row i's log-sum-exp, in the compute type (max-shifted: stable for any finite logits).
template <class T, class A = compute_t<T>>
A row_lse(const T* x, std::int64_t c) {
  A mx = -std::numeric_limits<A>::infinity();
  for (std::int64_t j = 0; j < c; ++j) {
    const A v = load(x[j]);
    if (v > mx || std::isnan(v)) mx = v;
    if (std::isnan(mx)) break;
  }
  if (std::isnan(mx) || std::isinf(mx)) return mx;  // NaN propagates; all -inf/+inf rows give inf/nan losses
  A s = 0;
  for (std::int64_t j = 0; j < c; ++j) s = s + std::exp(load(x[j]) - mx);
  return mx + std::log(s);
}

bool is_valid_label(std::int32_t y, std::int64_t c, std::int64_t ignore) {
  return static_cast<std::int64_t>(y) != ignore && y >= 0 && y < c;
}

}  // namespace

Array cross_entropy(const Array& logits, const Array& count, const Array& labels,
                    const nn::CrossEntropyParams& params) {
  const DType out_dtype = logits.dtype() == DType::f64 ? DType::f64 : DType::f32;
  const std::int64_t rows = row_count(logits, count);
  const std::int64_t c = logits.dim(1);
  const std::int32_t* y = labels.data<std::int32_t>();
  double total = 0.0;
  std::int64_t valid = 0;
  visit_float(logits.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    const T* x = static_cast<const T*>(logits.raw());
    const A smooth = static_cast<A>(params.label_smoothing);
    const A keep = static_cast<A>(1.0 - params.label_smoothing);
    const A per_class = static_cast<A>(params.label_smoothing / static_cast<double>(c));
    for (std::int64_t i = 0; i < rows; ++i) {
      if (!is_valid_label(y[i], c, params.ignore_index)) continue;
      const T* xi = x + i * c;
      const A lse = row_lse<T>(xi, c);
      A loss = keep * (lse - load(xi[y[i]]));
      if (smooth != A{0}) {
        A s = 0;
        for (std::int64_t j = 0; j < c; ++j) s = s + (lse - load(xi[j]));
        loss = loss + per_class * s;
      }
      total += static_cast<double>(loss);
      ++valid;
    }
  });
  if (params.reduction == nn::Reduction::mean) total = valid > 0 ? total / static_cast<double>(valid) : 0.0;
  return out_dtype == DType::f64 ? Array::scalar<double>(total, Device::cpu())
                                 : Array::scalar<float>(static_cast<float>(total), Device::cpu());
}

Array cross_entropy_backward(const Array& logits, const Array& count, const Array& labels,
                             const nn::CrossEntropyParams& params, const Array& grad_loss) {
  const std::int64_t rows = row_count(logits, count);
  const std::int64_t c = logits.dim(1);
  const std::int32_t* y = labels.data<std::int32_t>();
  std::int64_t valid = 0;
  for (std::int64_t i = 0; i < rows; ++i) valid += is_valid_label(y[i], c, params.ignore_index) ? 1 : 0;
  const double g = grad_loss.defined() ? grad_loss.astype(DType::f64).data<double>()[0] : 1.0;
  const double scale64 =
      params.reduction == nn::Reduction::mean ? (valid > 0 ? g / static_cast<double>(valid) : 0.0) : g;
  Array out = Array::zeros(logits.shape(), logits.dtype(), Device::cpu());
  visit_float(logits.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    const T* x = static_cast<const T*>(logits.raw());
    T* d = static_cast<T*>(out.raw());
    const A scale = static_cast<A>(scale64);
    const A keep = static_cast<A>(1.0 - params.label_smoothing);
    const A per_class = static_cast<A>(params.label_smoothing / static_cast<double>(c));
    for (std::int64_t i = 0; i < rows; ++i) {
      if (!is_valid_label(y[i], c, params.ignore_index)) continue;
      const T* xi = x + i * c;
      const A lse = row_lse<T>(xi, c);
      for (std::int64_t j = 0; j < c; ++j) {
        const A target = (j == y[i] ? keep : A{0}) + per_class;
        d[i * c + j] = store<T>(scale * (std::exp(load(xi[j]) - lse) - target));
      }
    }
  });
  return out;
}

Array confusion_matrix(const Array& pred, const Array& labels, std::int64_t num_classes, std::int64_t ignore_index) {
  Array out = Array::zeros(Shape{num_classes, num_classes}, DType::i64, Device::cpu());
  std::int64_t* cm = out.data<std::int64_t>();
  const std::int32_t* y = labels.data<std::int32_t>();
  const std::int64_t n = labels.dim(0);
  auto predicted = [&](std::int64_t i) -> std::int64_t {
    if (pred.dtype() == DType::i32) return pred.data<std::int32_t>()[i];
    if (pred.dtype() == DType::i64) return pred.data<std::int64_t>()[i];
    return visit_float(pred.dtype(), [&]<class T>() -> std::int64_t {
      const T* x = static_cast<const T*>(pred.raw()) + i * num_classes;
      std::int64_t best = 0;
      auto best_v = load(x[0]);
      for (std::int64_t j = 1; j < num_classes; ++j) {
        const auto v = load(x[j]);
        if (v > best_v || (std::isnan(best_v) && !std::isnan(v))) {
          best = j;
          best_v = v;
        }
      }
      return best;
    });
  };
  for (std::int64_t i = 0; i < n; ++i) {
    if (static_cast<std::int64_t>(y[i]) == ignore_index) continue;
    cm[static_cast<std::int64_t>(y[i]) * num_classes + predicted(i)] += 1;
  }
  return out;
}

}  // namespace lattice::cpu

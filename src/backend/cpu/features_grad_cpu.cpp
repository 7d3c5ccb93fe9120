// CPU VJPs of the feature ops (SPEC §13): activations, batch / layer / rms
// norm, row-aligned binary ops and the channel split. Elementwise loops run in
// parallel over elements; per-row reductions sum channels in index order in
// the compute type (float32 for 16-bit and float32, float64 for float64);
// per-column sums are float64 over k_chunks fixed row chunks added in chunk
// order (independent of the thread count).
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/api.hpp"
#include "backend/cpu/dispatch.hpp"

namespace lattice::cpu {

namespace {

constexpr std::int64_t k_chunks = 64;

template <class T>
void zero_tail(Array& out, std::int64_t rows) {
  T* y = out.data<T>();
  const std::int64_t c = out.dim(1);
  std::fill(y + rows * c, y + out.dim(0) * c, store<T>(0.0f));
}

// Per-column float64 sums of term(r, j) over rows [0, rows), fixed order.
template <class Term>
std::vector<double> column_sums(std::int64_t rows, std::int64_t c, const Term& term) {
  const auto cs = static_cast<std::size_t>(c);
  std::vector<double> partial(static_cast<std::size_t>(k_chunks) * cs, 0.0);
#pragma omp parallel for schedule(static)
  for (std::int64_t ch = 0; ch < k_chunks; ++ch) {
    double* acc = partial.data() + static_cast<std::size_t>(ch) * cs;
    for (std::int64_t r = rows * ch / k_chunks; r < rows * (ch + 1) / k_chunks; ++r)
      for (std::int64_t j = 0; j < c; ++j) acc[j] += term(r, j);
  }
  std::vector<double> total(cs, 0.0);
  for (std::int64_t ch = 0; ch < k_chunks; ++ch)
    for (std::size_t j = 0; j < cs; ++j) total[j] += partial[static_cast<std::size_t>(ch) * cs + j];
  return total;
}

std::vector<double> as_doubles(const std::optional<Array>& v, std::int64_t c, double fallback) {
  std::vector<double> out(static_cast<std::size_t>(c), fallback);
  if (v) {
    const Array d = v->astype(DType::f64);
    const double* p = d.data<double>();
    std::copy(p, p + c, out.begin());
  }
  return out;
}

// A (C,) float64 host vector as an array of `dtype` (16-bit via float32, as astype does).
Array vector_as(const std::vector<double>& v, DType dtype) {
  return Array::from_vector(v, Shape{static_cast<std::int64_t>(v.size())}, Device::cpu()).astype(dtype);
}

// d activation(v) / dv in the compute type A (formulas of features_cpu.cpp).
template <ops::ActivationKind K, class A>
A activation_slope(A v, A slope) {
  using Kind = ops::ActivationKind;
  if constexpr (K == Kind::relu) return v > A{0} ? A{1} : A{0};
  if constexpr (K == Kind::leaky_relu) return v > A{0} ? A{1} : slope;
  if constexpr (K == Kind::gelu) {
    // Phi(v) + v * phi(v).
    const A cdf = A{0.5} * (A{1} + std::erf(v / std::sqrt(A{2})));
    const A pdf = std::exp(A{-0.5} * v * v) / std::sqrt(A{2} * A{3.14159265358979323846});
    return cdf + v * pdf;
  }
  if constexpr (K == Kind::gelu_tanh) {
    const A k = std::sqrt(A{2} / A{3.14159265358979323846});
    const A t = std::tanh(k * (v + A{0.044715} * v * v * v));
    return A{0.5} * (A{1} + t) + A{0.5} * v * (A{1} - t * t) * k * (A{1} + A{3} * A{0.044715} * v * v);
  }
  if constexpr (K == Kind::silu) {
    const A s = A{1} / (A{1} + std::exp(-v));
    return s * (A{1} + v * (A{1} - s));
  }
  if constexpr (K == Kind::sigmoid) {
    const A s = A{1} / (A{1} + std::exp(-v));
    return s * (A{1} - s);
  }
  if constexpr (K == Kind::tanh) {
    const A t = std::tanh(v);
    return A{1} - t * t;
  }
  if constexpr (K == Kind::softplus) {
    // beta 1, threshold 20 (the forward is the identity above it).
    if (v > A{20}) return A{1};
    const A z = std::exp(v);
    return z / (z + A{1});
  }
}

template <ops::ActivationKind K, class T>
void activation_backward_loop(const T* x, const T* dy, T* dx, std::int64_t n, double slope) {
  using A = compute_t<T>;
  const A s = static_cast<A>(slope);
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) dx[i] = store<T>(load(dy[i]) * activation_slope<K, A>(load(x[i]), s));
}

}  // namespace

void activation_backward(const Array& x, const Array& dy, std::int64_t rows, const ops::ActivationParams& params,
                         Array& dx) {
  visit_float(x.dtype(), [&]<class T>() {
    const T* xp = x.data<T>();
    const T* gp = dy.data<T>();
    T* out = dx.data<T>();
    const std::int64_t n = rows * x.dim(1);
    const double s = params.negative_slope;
    using Kind = ops::ActivationKind;
    switch (params.kind) {
      case Kind::relu:
        activation_backward_loop<Kind::relu>(xp, gp, out, n, s);
        break;
      case Kind::leaky_relu:
        activation_backward_loop<Kind::leaky_relu>(xp, gp, out, n, s);
        break;
      case Kind::gelu:
        activation_backward_loop<Kind::gelu>(xp, gp, out, n, s);
        break;
      case Kind::gelu_tanh:
        activation_backward_loop<Kind::gelu_tanh>(xp, gp, out, n, s);
        break;
      case Kind::silu:
        activation_backward_loop<Kind::silu>(xp, gp, out, n, s);
        break;
      case Kind::sigmoid:
        activation_backward_loop<Kind::sigmoid>(xp, gp, out, n, s);
        break;
      case Kind::tanh:
        activation_backward_loop<Kind::tanh>(xp, gp, out, n, s);
        break;
      case Kind::softplus:
        activation_backward_loop<Kind::softplus>(xp, gp, out, n, s);
        break;
    }
    zero_tail<T>(dx, rows);
  });
}

void binary_backward_rows(const Array& a, const Array& b, const Array& dy, std::int64_t rows, ops::BinaryOp op,
                          Array& ga, Array& gb) {
  visit_float(a.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    const T* ap = a.data<T>();
    const T* bp = b.data<T>();
    const T* gp = dy.data<T>();
    T* oa = ga.data<T>();
    T* ob = gb.data<T>();
    const std::int64_t n = rows * a.dim(1);
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < n; ++i) {
      const A g = load(gp[i]);
      A da = g, db = g;
      switch (op) {
        case ops::BinaryOp::add:
          break;
        case ops::BinaryOp::sub:
          db = -g;
          break;
        case ops::BinaryOp::mul:
          da = g * load(bp[i]);
          db = g * load(ap[i]);
          break;
        case ops::BinaryOp::maximum:
        case ops::BinaryOp::minimum: {
          const A va = load(ap[i]), vb = load(bp[i]);
          const bool lhs = std::isnan(va) || (op == ops::BinaryOp::maximum ? va >= vb : va <= vb);
          da = lhs ? g : A{0};
          db = lhs ? A{0} : g;
          break;
        }
      }
      oa[i] = store<T>(da);
      ob[i] = store<T>(db);
    }
    zero_tail<T>(ga, rows);
    zero_tail<T>(gb, rows);
  });
}

void split_channels(const Array& dy, std::int64_t rows, Array& a, Array& b) {
  const std::size_t ra = a.row_bytes(), rb = b.row_bytes();
  const std::size_t cap = static_cast<std::size_t>(a.dim(0));
  if (ra > 0) std::memset(a.raw(), 0, cap * ra);
  if (rb > 0) std::memset(b.raw(), 0, cap * rb);
  if (ra + rb == 0) return;
  const char* src = static_cast<const char*>(dy.raw());
  char* ap = static_cast<char*>(a.raw());
  char* bp = static_cast<char*>(b.raw());
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::size_t u = static_cast<std::size_t>(r);
    if (ra > 0) std::memcpy(ap + u * ra, src + u * (ra + rb), ra);
    if (rb > 0) std::memcpy(bp + u * rb, src + u * (ra + rb) + ra, rb);
  }
}

void row_norm_backward(const Array& x, const Array& dy, std::int64_t rows, const std::optional<Array>& weight,
                       double eps, bool center, Array& dx, Array* dweight, Array* dbias) {
  visit_float(x.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    const std::int64_t c = x.dim(1);
    std::vector<A> w(static_cast<std::size_t>(c), A{1});
    if (weight) {
      const T* wp = weight->data<T>();
      for (std::int64_t j = 0; j < c; ++j) w[static_cast<std::size_t>(j)] = load(wp[j]);
    }
    const A e = static_cast<A>(eps);
    const A count = static_cast<A>(c);
    const T* xp = x.data<T>();
    const T* gp = dy.data<T>();
    T* out = dx.data<T>();
    // Per-row statistics (mean, 1/sqrt(var + eps)), kept for the weight gradient.
    std::vector<A> mean(static_cast<std::size_t>(rows)), inv(static_cast<std::size_t>(rows));
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
      const T* xr = xp + r * c;
      const T* gr = gp + r * c;
      A m = A{0};
      if (center) {
        A sum = A{0};
        for (std::int64_t j = 0; j < c; ++j) sum += load(xr[j]);
        m = sum / count;
      }
      A sq = A{0};
      for (std::int64_t j = 0; j < c; ++j) {
        const A d = load(xr[j]) - m;
        sq += d * d;
      }
      const A iv = A{1} / std::sqrt(sq / count + e);
      // dx = inv * (g - mean(g) - xhat * mean(g * xhat)), g = dy * w (the
      // mean(g) term only when the forward centred the row).
      A sum_g = A{0}, sum_gx = A{0};
      for (std::int64_t j = 0; j < c; ++j) {
        const A g = load(gr[j]) * w[static_cast<std::size_t>(j)];
        sum_g += g;
        sum_gx += g * ((load(xr[j]) - m) * iv);
      }
      const A mg = center ? sum_g / count : A{0};
      const A mgx = sum_gx / count;
      for (std::int64_t j = 0; j < c; ++j) {
        const A g = load(gr[j]) * w[static_cast<std::size_t>(j)];
        const A xhat = (load(xr[j]) - m) * iv;
        out[r * c + j] = store<T>(iv * (g - mg - xhat * mgx));
      }
      mean[static_cast<std::size_t>(r)] = m;
      inv[static_cast<std::size_t>(r)] = iv;
    }
    zero_tail<T>(dx, rows);
    if (dweight != nullptr) {
      const auto s = column_sums(rows, c, [&](std::int64_t r, std::int64_t j) {
        const auto u = static_cast<std::size_t>(r);
        const double xhat = static_cast<double>((load(xp[r * c + j]) - mean[u]) * inv[u]);
        return static_cast<double>(load(gp[r * c + j])) * xhat;
      });
      *dweight = vector_as(s, x.dtype());
    }
    if (dbias != nullptr) {
      const auto s = column_sums(
          rows, c, [&](std::int64_t r, std::int64_t j) { return static_cast<double>(load(gp[r * c + j])); });
      *dbias = vector_as(s, x.dtype());
    }
  });
}

void batch_norm_backward(const Array& x, const Array& dy, std::int64_t rows, const ops::BatchNormArgs& args, Array& dx,
                         Array* dweight, Array* dbias) {
  const std::int64_t c = x.dim(1);
  const auto cs = static_cast<std::size_t>(c);
  const std::vector<double> gamma = as_doubles(args.weight, c, 1.0);
  visit_float(x.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    const T* xp = x.data<T>();
    const T* gp = dy.data<T>();
    // Statistics as the forward computes them (float64, same chunking).
    std::vector<double> mean = as_doubles(args.running_mean, c, 0.0);
    std::vector<double> var = as_doubles(args.running_var, c, 1.0);
    if (args.training) {
      mean = column_sums(rows, c,
                         [&](std::int64_t r, std::int64_t j) { return static_cast<double>(load(xp[r * c + j])); });
      for (double& v : mean) v /= static_cast<double>(rows);
      var = column_sums(rows, c, [&](std::int64_t r, std::int64_t j) {
        const double d = static_cast<double>(load(xp[r * c + j])) - mean[static_cast<std::size_t>(j)];
        return d * d;
      });
      for (double& v : var) v /= static_cast<double>(rows);
    }
    std::vector<double> inv(cs);
    for (std::size_t j = 0; j < cs; ++j) inv[j] = 1.0 / std::sqrt(var[j] + args.eps);
    auto xhat = [&](std::int64_t r, std::int64_t j) {
      const auto u = static_cast<std::size_t>(j);
      return (static_cast<double>(load(xp[r * c + j])) - mean[u]) * inv[u];
    };
    const std::vector<double> sum_g =
        column_sums(rows, c, [&](std::int64_t r, std::int64_t j) { return static_cast<double>(load(gp[r * c + j])); });
    const std::vector<double> sum_gx = column_sums(
        rows, c, [&](std::int64_t r, std::int64_t j) { return static_cast<double>(load(gp[r * c + j])) * xhat(r, j); });
    // training: dx = gamma * inv * (dy - mean(dy) - xhat * mean(dy * xhat));
    // inference: dx = gamma * inv * dy (the statistics are constants).
    std::vector<double> scale(cs), mg(cs, 0.0), mgx(cs, 0.0);
    for (std::size_t j = 0; j < cs; ++j) {
      scale[j] = gamma[j] * inv[j];
      if (args.training) {
        mg[j] = sum_g[j] / static_cast<double>(rows);
        mgx[j] = sum_gx[j] / static_cast<double>(rows);
      }
    }
    T* out = dx.data<T>();
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t j = 0; j < c; ++j) {
        const auto u = static_cast<std::size_t>(j);
        const double g = static_cast<double>(load(gp[r * c + j]));
        const double v = args.training ? scale[u] * (g - mg[u] - xhat(r, j) * mgx[u]) : scale[u] * g;
        out[r * c + j] = store<T>(static_cast<A>(v));
      }
    }
    zero_tail<T>(dx, rows);
    if (dweight != nullptr) *dweight = vector_as(sum_gx, args.weight->dtype());
    if (dbias != nullptr) *dbias = vector_as(sum_g, args.bias->dtype());
  });
}

}  // namespace lattice::cpu

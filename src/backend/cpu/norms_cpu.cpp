// CPU dropout and per-row norms (SPEC Appendix A "Feature ops"). Rows are
// independent, so the loops run in parallel over rows; within a row the
// channels are summed in index order (the CUDA kernels use the same order).
#include <cmath>
#include <vector>

#include "backend/cpu/api.hpp"
#include "backend/cpu/dispatch.hpp"

namespace lattice::cpu {

namespace {

template <class T>
void zero_capacity(Array& out, std::int64_t rows) {
  T* y = out.data<T>();
  std::fill(y + rows * out.dim(1), y + out.dim(0) * out.dim(1), store<T>(0.0f));
}

// Optional (C,) parameter in the compute type.
template <class T>
std::vector<compute_t<T>> param(const std::optional<Array>& v, std::int64_t c, double fallback) {
  std::vector<compute_t<T>> out(static_cast<std::size_t>(c), static_cast<compute_t<T>>(fallback));
  if (v) {
    const T* p = v->data<T>();
    for (std::int64_t j = 0; j < c; ++j) out[static_cast<std::size_t>(j)] = load(p[j]);
  }
  return out;
}

}  // namespace

void dropout(const Array& x, std::int64_t rows, double p, std::uint64_t seed, Array& out) {
  visit_float(x.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    const std::int64_t c = x.dim(1);
    const A scale = static_cast<A>(1.0 / (1.0 - p));
    const T* xp = x.data<T>();
    T* y = out.data<T>();
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t j = 0; j < c; ++j) {
        const bool keep = detail::dropout_keep(seed, static_cast<std::uint64_t>(r), static_cast<std::uint64_t>(j), p);
        y[r * c + j] = store<T>(keep ? load(xp[r * c + j]) * scale : A{0});
      }
    }
    zero_capacity<T>(out, rows);
  });
}

void layer_norm(const Array& x, std::int64_t rows, const std::optional<Array>& weight, const std::optional<Array>& bias,
                double eps, Array& out) {
  visit_float(x.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    const std::int64_t c = x.dim(1);
    const auto w = param<T>(weight, c, 1.0);
    const auto b = param<T>(bias, c, 0.0);
    const A e = static_cast<A>(eps);
    const T* xp = x.data<T>();
    T* y = out.data<T>();
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
      const T* xr = xp + r * c;
      A sum = A{0};
      for (std::int64_t j = 0; j < c; ++j) sum += load(xr[j]);
      const A mean = sum / static_cast<A>(c);
      A sq = A{0};
      for (std::int64_t j = 0; j < c; ++j) {
        const A d = load(xr[j]) - mean;
        sq += d * d;
      }
      const A inv = A{1} / std::sqrt(sq / static_cast<A>(c) + e);
      for (std::int64_t j = 0; j < c; ++j) {
        const auto k = static_cast<std::size_t>(j);
        y[r * c + j] = store<T>((load(xr[j]) - mean) * inv * w[k] + b[k]);
      }
    }
    zero_capacity<T>(out, rows);
  });
}

void rms_norm(const Array& x, std::int64_t rows, const std::optional<Array>& weight, double eps, Array& out) {
  visit_float(x.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    const std::int64_t c = x.dim(1);
    const auto w = param<T>(weight, c, 1.0);
    const A e = static_cast<A>(eps);
    const T* xp = x.data<T>();
    T* y = out.data<T>();
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
      const T* xr = xp + r * c;
      A sq = A{0};
      for (std::int64_t j = 0; j < c; ++j) {
        const A v = load(xr[j]);
        sq += v * v;
      }
      const A inv = A{1} / std::sqrt(sq / static_cast<A>(c) + e);
      for (std::int64_t j = 0; j < c; ++j) y[r * c + j] = store<T>(load(xr[j]) * inv * w[static_cast<std::size_t>(j)]);
    }
    zero_capacity<T>(out, rows);
  });
}

}  // namespace lattice::cpu

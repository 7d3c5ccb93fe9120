// CPU feature ops over the active rows; capacity rows of every output are zeroed.
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/api.hpp"
#include "backend/cpu/dispatch.hpp"

namespace lattice::cpu {

namespace {

template <class T>
void zero_tail(Array& out, std::int64_t rows) {
  T* y = out.data<T>();
  const std::int64_t c = out.dim(1);
  std::fill(y + rows * c, y + out.dim(0) * c, store<T>(0.0f));
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

// One instantiation per kind: the kind is resolved once per call, outside the
// element loop, so simple activations vectorize.
template <ops::ActivationKind K, class A>
A apply_activation(A v, A slope) {
  using Kind = ops::ActivationKind;
  if constexpr (K == Kind::relu) return v > A{0} ? v : A{0};
  if constexpr (K == Kind::leaky_relu) return v > A{0} ? v : slope * v;
  if constexpr (K == Kind::gelu) return A{0.5} * v * (A{1} + std::erf(v / std::sqrt(A{2})));
  if constexpr (K == Kind::gelu_tanh) {
    const A k = std::sqrt(A{2} / A{3.14159265358979323846});
    return A{0.5} * v * (A{1} + std::tanh(k * (v + A{0.044715} * v * v * v)));
  }
  if constexpr (K == Kind::silu) return v / (A{1} + std::exp(-v));
  if constexpr (K == Kind::sigmoid) return A{1} / (A{1} + std::exp(-v));
  if constexpr (K == Kind::tanh) return std::tanh(v);
  if constexpr (K == Kind::softplus) return v > A{20} ? v : std::log1p(std::exp(v));  // beta 1, threshold 20
}

template <ops::ActivationKind K, class T>
void activation_loop(const T* x, T* y, std::int64_t n, double slope) {
  using A = compute_t<T>;
  const A s = static_cast<A>(slope);
#pragma omp parallel for simd schedule(static)
  for (std::int64_t i = 0; i < n; ++i) y[i] = store<T>(apply_activation<K, A>(load(x[i]), s));
}

}  // namespace

void batch_norm(const Array& x, std::int64_t rows, const ops::BatchNormArgs& args, Array& out, Array& running_mean,
                Array& running_var) {
  const std::int64_t c = x.dim(1);
  const std::vector<double> gamma = as_doubles(args.weight, c, 1.0);
  const std::vector<double> beta = as_doubles(args.bias, c, 0.0);
  std::vector<double> mean = as_doubles(args.running_mean, c, 0.0);
  std::vector<double> var = as_doubles(args.running_var, c, 1.0);
  visit_float(x.dtype(), [&]<class T>() {
    const T* xp = x.data<T>();
    if (args.training) {
      // Two-pass statistics in float64 over the active rows. Rows are split
      // into a fixed number of chunks summed in parallel and combined in
      // chunk order, so the result does not depend on the thread count.
      constexpr std::int64_t k_chunks = 64;
      const auto cs = static_cast<std::size_t>(c);
      auto chunked_sum = [&](auto&& term) {
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
      };
      std::vector<double> sum =
          chunked_sum([&](std::int64_t r, std::int64_t j) { return static_cast<double>(load(xp[r * c + j])); });
      for (double& v : sum) v /= static_cast<double>(rows);
      std::vector<double> sq = chunked_sum([&](std::int64_t r, std::int64_t j) {
        const double d = static_cast<double>(load(xp[r * c + j])) - sum[static_cast<std::size_t>(j)];
        return d * d;
      });
      std::vector<double> new_mean(static_cast<std::size_t>(c)), new_var(static_cast<std::size_t>(c));
      for (std::size_t j = 0; j < static_cast<std::size_t>(c); ++j) {
        const double biased = sq[j] / static_cast<double>(rows);
        const double unbiased = sq[j] / static_cast<double>(rows - 1);
        new_mean[j] = (1.0 - args.momentum) * mean[j] + args.momentum * sum[j];
        new_var[j] = (1.0 - args.momentum) * var[j] + args.momentum * unbiased;
        mean[j] = sum[j];
        var[j] = biased;
      }
      running_mean = Array::from_vector(new_mean, Shape{c}, Device::cpu()).astype(args.running_mean.dtype());
      running_var = Array::from_vector(new_var, Shape{c}, Device::cpu()).astype(args.running_var.dtype());
    } else {
      running_mean = args.running_mean;
      running_var = args.running_var;
    }
    using A = compute_t<T>;
    std::vector<A> scale(static_cast<std::size_t>(c)), shift(static_cast<std::size_t>(c));
    for (std::size_t j = 0; j < static_cast<std::size_t>(c); ++j) {
      const double inv = 1.0 / std::sqrt(var[j] + args.eps);
      scale[j] = static_cast<A>(gamma[j] * inv);
      shift[j] = static_cast<A>(beta[j] - mean[j] * gamma[j] * inv);
    }
    T* y = out.data<T>();
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t j = 0; j < c; ++j)
        y[r * c + j] =
            store<T>(load(xp[r * c + j]) * scale[static_cast<std::size_t>(j)] + shift[static_cast<std::size_t>(j)]);
    zero_tail<T>(out, rows);
  });
}

void activation(const Array& x, std::int64_t rows, const ops::ActivationParams& params, Array& out) {
  visit_float(x.dtype(), [&]<class T>() {
    const T* xp = x.data<T>();
    T* y = out.data<T>();
    const std::int64_t n = rows * x.dim(1);
    using Kind = ops::ActivationKind;
    switch (params.kind) {
      case Kind::relu:
        activation_loop<Kind::relu>(xp, y, n, params.negative_slope);
        break;
      case Kind::leaky_relu:
        activation_loop<Kind::leaky_relu>(xp, y, n, params.negative_slope);
        break;
      case Kind::gelu:
        activation_loop<Kind::gelu>(xp, y, n, params.negative_slope);
        break;
      case Kind::gelu_tanh:
        activation_loop<Kind::gelu_tanh>(xp, y, n, params.negative_slope);
        break;
      case Kind::silu:
        activation_loop<Kind::silu>(xp, y, n, params.negative_slope);
        break;
      case Kind::sigmoid:
        activation_loop<Kind::sigmoid>(xp, y, n, params.negative_slope);
        break;
      case Kind::tanh:
        activation_loop<Kind::tanh>(xp, y, n, params.negative_slope);
        break;
      case Kind::softplus:
        activation_loop<Kind::softplus>(xp, y, n, params.negative_slope);
        break;
    }
    zero_tail<T>(out, rows);
  });
}

void add_rows(const Array& a, const Array& b, std::int64_t rows, Array& out) {
  visit_float(a.dtype(), [&]<class T>() {
    const T* ap = a.data<T>();
    const T* bp = b.data<T>();
    T* y = out.data<T>();
    const std::int64_t n = rows * a.dim(1);
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < n; ++i) y[i] = store<T>(load(ap[i]) + load(bp[i]));
    zero_tail<T>(out, rows);
  });
}

void cat_channels(const Array& a, const Array& b, std::int64_t rows, Array& out) {
  if (out.numel() == 0) return;  // empty arrays may have no storage at all
  const std::size_t ra = a.row_bytes(), rb = b.row_bytes();
  const char* ap = static_cast<const char*>(a.raw());
  const char* bp = static_cast<const char*>(b.raw());
  char* y = static_cast<char*>(out.raw());
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    std::memcpy(y + static_cast<std::size_t>(r) * (ra + rb), ap + static_cast<std::size_t>(r) * ra, ra);
    std::memcpy(y + static_cast<std::size_t>(r) * (ra + rb) + ra, bp + static_cast<std::size_t>(r) * rb, rb);
  }
  std::memset(y + static_cast<std::size_t>(rows) * (ra + rb), 0,
              static_cast<std::size_t>(out.dim(0) - rows) * (ra + rb));
}

}  // namespace lattice::cpu

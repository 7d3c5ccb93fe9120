// CUDA VJPs of the feature ops (SPEC §13), the same math as
// backend/cpu/features_grad_cpu.cpp. The active row count is read on the
// device (read_count); rows past it are left as the front end allocated them
// (zeros). Nothing waits for the host.
//
// Determinism: elementwise kernels own their outputs; per-row reductions run
// one thread per row over the channels in index order; per-column (weight,
// bias, batch statistic) sums go through device/reduce.cuh (fixed chunking,
// float64). No atomics.
#include <cstdint>

#include <cuda_runtime.h>

#include "backend/cuda/api.hpp"
#include "backend/cuda/device/common.cuh"
#include "backend/cuda/device/reduce.cuh"
#include "backend/cuda/device/vec_io.cuh"

namespace lattice::cuda {

namespace {

using device::compute_t;
using device::load;
using device::read_count;
using device::store;

constexpr int k_threads = 256;

cudaStream_t prepare(const Array& x) {
  LATTICE_CUDA_CHECK(cudaSetDevice(x.device().index));
  return stream_of(x.device());
}

// ---- math in the compute type (float or double overloads) ---------------------------

template <class A>
__device__ __forceinline__ A d_exp(A v) {
  if constexpr (std::is_same_v<A, float>) {
    return expf(v);
  } else {
    return exp(v);
  }
}
template <class A>
__device__ __forceinline__ A d_erf(A v) {
  if constexpr (std::is_same_v<A, float>) {
    return erff(v);
  } else {
    return erf(v);
  }
}
template <class A>
__device__ __forceinline__ A d_tanh(A v) {
  if constexpr (std::is_same_v<A, float>) {
    return tanhf(v);
  } else {
    return tanh(v);
  }
}
template <class A>
__device__ __forceinline__ A d_sqrt(A v) {
  if constexpr (std::is_same_v<A, float>) {
    return sqrtf(v);
  } else {
    return sqrt(v);
  }
}

// ---- activations -------------------------------------------------------------------------

template <class A>
__device__ __forceinline__ A activation_slope(ops::ActivationKind kind, A v, A slope) {
  using Kind = ops::ActivationKind;
  constexpr A pi = static_cast<A>(3.14159265358979323846);
  switch (kind) {
    case Kind::relu:
      return v > A{0} ? A{1} : A{0};
    case Kind::leaky_relu:
      return v > A{0} ? A{1} : slope;
    case Kind::gelu: {
      const A cdf = A{0.5} * (A{1} + d_erf(v / d_sqrt(A{2})));
      const A pdf = d_exp(A{-0.5} * v * v) / d_sqrt(A{2} * pi);
      return cdf + v * pdf;
    }
    case Kind::gelu_tanh: {
      const A k = d_sqrt(A{2} / pi);
      const A c = static_cast<A>(0.044715);
      const A t = d_tanh(k * (v + c * v * v * v));
      return A{0.5} * (A{1} + t) + A{0.5} * v * (A{1} - t * t) * k * (A{1} + A{3} * c * v * v);
    }
    case Kind::silu: {
      const A s = A{1} / (A{1} + d_exp(-v));
      return s * (A{1} + v * (A{1} - s));
    }
    case Kind::sigmoid: {
      const A s = A{1} / (A{1} + d_exp(-v));
      return s * (A{1} - s);
    }
    case Kind::tanh: {
      const A t = d_tanh(v);
      return A{1} - t * t;
    }
    default: {  // softplus: beta 1, threshold 20
      if (v > A{20}) return A{1};
      const A z = d_exp(v);
      return z / (z + A{1});
    }
  }
}

template <class T>
__global__ void activation_backward_kernel(const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ dx,
                                           const std::int32_t* rows_ptr, std::int64_t capacity, std::int64_t c,
                                           ops::ActivationKind kind, compute_t<T> slope) {
  const std::int64_t n = read_count(rows_ptr, capacity) * c;
  LATTICE_GRID_LOOP(i, n) { dx[i] = store<T>(load(dy[i]) * activation_slope(kind, load(x[i]), slope)); }
}

// ---- row-aligned binary ops and the channel split -------------------------------------------

template <class T>
__global__ void binary_backward_kernel(const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ dy,
                                       T* __restrict__ ga, T* __restrict__ gb, const std::int32_t* rows_ptr,
                                       std::int64_t capacity, std::int64_t c, ops::BinaryOp op) {
  using A = compute_t<T>;
  const std::int64_t n = read_count(rows_ptr, capacity) * c;
  LATTICE_GRID_LOOP(i, n) {
    const A g = load(dy[i]);
    A da = g, db = g;
    if (op == ops::BinaryOp::sub) {
      db = -g;
    } else if (op == ops::BinaryOp::mul) {
      da = g * load(b[i]);
      db = g * load(a[i]);
    } else if (op == ops::BinaryOp::maximum || op == ops::BinaryOp::minimum) {
      const A va = load(a[i]), vb = load(b[i]);
      const bool lhs = isnan(va) || (op == ops::BinaryOp::maximum ? va >= vb : va <= vb);  // ties: lhs
      da = lhs ? g : A{0};
      db = lhs ? A{0} : g;
    }
    ga[i] = store<T>(da);
    gb[i] = store<T>(db);
  }
}

template <class T>
__global__ void split_kernel(const T* __restrict__ dy, T* __restrict__ a, T* __restrict__ b,
                             const std::int32_t* rows_ptr, std::int64_t capacity, std::int64_t ca, std::int64_t cb) {
  const std::int64_t c = ca + cb;
  const std::int64_t n = read_count(rows_ptr, capacity) * c;
  LATTICE_GRID_LOOP(i, n) {
    const std::int64_t r = i / c;
    const std::int64_t k = i - r * c;
    if (k < ca) {
      a[r * ca + k] = dy[i];
    } else {
      b[r * cb + (k - ca)] = dy[i];
    }
  }
}

// ---- per-column sums: terms and finishes --------------------------------------------------------

using device::load_vec;
using device::store_vec;

// out[j] = total (float64), and optionally into a (C,) array of `dtype`.
struct StoreFinish {
  double* out = nullptr;
  void* cast = nullptr;
  DType dtype = DType::f64;
  __device__ void operator()(std::int64_t j, double total, std::int64_t) const {
    if (out != nullptr) out[j] = total;
    if (cast != nullptr) store_vec(cast, dtype, j, total);
  }
};

template <class T>
struct ValueTerm {  // v[r, j]
  const T* v;
  std::int64_t c;
  __device__ double operator()(std::int64_t r, std::int64_t j) const { return static_cast<double>(load(v[r * c + j])); }
};

// Batch norm per-channel statistics: mean[j] = total / rows (NaN below two
// rows in training, as the forward), inv[j] = 1 / sqrt(total / rows + eps).
struct MeanFinish {
  double* mean;
  __device__ void operator()(std::int64_t j, double total, std::int64_t rows) const {
    mean[j] = rows < 2 ? __longlong_as_double(0x7ff8000000000000LL) : total / static_cast<double>(rows);
  }
};
struct InvStdFinish {
  double* inv;
  double eps;
  __device__ void operator()(std::int64_t j, double total, std::int64_t rows) const {
    inv[j] = 1.0 / sqrt(total / static_cast<double>(rows) + eps);
  }
};

template <class T>
struct BnGradXhatTerm {  // dy[r, j] * (x[r, j] - mean[j]) * inv[j]
  const T* x;
  const T* dy;
  const double* mean;
  const double* inv;
  std::int64_t c;
  __device__ double operator()(std::int64_t r, std::int64_t j) const {
    const double xhat = __dmul_rn(static_cast<double>(load(x[r * c + j])) - mean[j], inv[j]);
    return __dmul_rn(static_cast<double>(load(dy[r * c + j])), xhat);
  }
};

// Training batch norm's two passes, each carrying two column sums:
//  pass 1  (x, dy)                        -> mean, sum(dy)
//  pass 2  ((x - mean)^2, dy (x - mean))  -> 1 / sqrt(var + eps), sum(dy xhat)
template <class T>
struct ValuePairTerm {
  const T* x;
  const T* dy;
  std::int64_t c;
  __device__ device::DoublePair operator()(std::int64_t r, std::int64_t j) const {
    return {static_cast<double>(load(x[r * c + j])), static_cast<double>(load(dy[r * c + j]))};
  }
};
template <class T>
struct DevPairTerm {
  const T* x;
  const T* dy;
  const double* mean;
  std::int64_t c;
  __device__ device::DoublePair operator()(std::int64_t r, std::int64_t j) const {
    const double d = static_cast<double>(load(x[r * c + j])) - mean[j];
    return {__dmul_rn(d, d), __dmul_rn(static_cast<double>(load(dy[r * c + j])), d)};
  }
};
struct MeanAndStoreFinish {  // mean (as MeanFinish) and sum(dy) (as StoreFinish)
  MeanFinish mean;
  StoreFinish sum_g;
  __device__ void operator()(std::int64_t j, device::DoublePair total, std::int64_t rows) const {
    mean(j, total.a, rows);
    sum_g(j, total.b, rows);
  }
};
struct InvStdAndStoreFinish {  // inv (as InvStdFinish) and sum(dy (x - mean)) * inv
  InvStdFinish inv;
  StoreFinish sum_gx;
  __device__ void operator()(std::int64_t j, device::DoublePair total, std::int64_t rows) const {
    inv(j, total.a, rows);
    sum_gx(j, __dmul_rn(total.b, inv.inv[j]), rows);
  }
};

// With the forward's statistics: (dy, dy (x - mean)) in one pass.
template <class T>
struct GradPairTerm {
  const T* x;
  const T* dy;
  const double* mean;
  std::int64_t c;
  __device__ device::DoublePair operator()(std::int64_t r, std::int64_t j) const {
    const double g = static_cast<double>(load(dy[r * c + j]));
    return {g, __dmul_rn(g, static_cast<double>(load(x[r * c + j])) - mean[j])};
  }
};
struct SumsFinish {  // sum(dy) and sum(dy (x - mean)) * inv
  StoreFinish sum_g;
  StoreFinish sum_gx;
  const double* inv;
  __device__ void operator()(std::int64_t j, device::DoublePair total, std::int64_t rows) const {
    sum_g(j, total.a, rows);
    sum_gx(j, __dmul_rn(total.b, inv[j]), rows);
  }
};

template <class T>
struct RowGradXhatTerm {  // dy[r, j] * (x[r, j] - mean[r]) * inv[r], row statistics in A
  const T* x;
  const T* dy;
  const compute_t<T>* mean;
  const compute_t<T>* inv;
  std::int64_t c;
  __device__ double operator()(std::int64_t r, std::int64_t j) const {
    const double xhat = static_cast<double>((load(x[r * c + j]) - mean[r]) * inv[r]);
    return __dmul_rn(static_cast<double>(load(dy[r * c + j])), xhat);
  }
};

// ---- norms -------------------------------------------------------------------------------------

// One thread per row: dx = inv * (g - mean(g) - xhat * mean(g * xhat)), g = dy * w.
template <class T>
__global__ void row_norm_backward_kernel(const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ dx,
                                         const std::int32_t* rows_ptr, std::int64_t capacity, std::int64_t c,
                                         const T* __restrict__ weight, compute_t<T> eps, bool center,
                                         compute_t<T>* row_mean, compute_t<T>* row_inv) {
  using A = compute_t<T>;
  const std::int64_t rows = read_count(rows_ptr, capacity);
  const A count = static_cast<A>(c);
  LATTICE_GRID_LOOP(r, rows) {
    const T* xr = x + r * c;
    const T* gr = dy + r * c;
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
    const A iv = A{1} / d_sqrt(sq / count + eps);
    A sum_g = A{0}, sum_gx = A{0};
    for (std::int64_t j = 0; j < c; ++j) {
      const A w = weight != nullptr ? static_cast<A>(load(weight[j])) : A{1};
      const A g = load(gr[j]) * w;
      sum_g += g;
      sum_gx += g * ((load(xr[j]) - m) * iv);
    }
    const A mg = center ? sum_g / count : A{0};
    const A mgx = sum_gx / count;
    for (std::int64_t j = 0; j < c; ++j) {
      const A w = weight != nullptr ? static_cast<A>(load(weight[j])) : A{1};
      const A xhat = (load(xr[j]) - m) * iv;
      dx[r * c + j] = store<T>(iv * (load(gr[j]) * w - mg - xhat * mgx));
    }
    row_mean[r] = m;
    row_inv[r] = iv;
  }
}

// Inference statistics from the running ones.
__global__ void bn_running_stats_kernel(const void* rmean, DType mean_dtype, const void* rvar, DType var_dtype,
                                        double eps, double* mean, double* inv, std::int64_t c) {
  LATTICE_GRID_LOOP(j, c) {
    mean[j] = load_vec(rmean, mean_dtype, j, 0.0);
    inv[j] = 1.0 / sqrt(load_vec(rvar, var_dtype, j, 1.0) + eps);
  }
}

template <class T>
__global__ void bn_backward_kernel(const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ dx,
                                   const std::int32_t* rows_ptr, std::int64_t capacity, std::int64_t c,
                                   const void* weight, DType weight_dtype, const double* mean, const double* inv,
                                   const double* sum_g, const double* sum_gx, bool training) {
  const std::int64_t rows = read_count(rows_ptr, capacity);
  const std::int64_t n = rows * c;
  const double count = static_cast<double>(rows);
  LATTICE_GRID_LOOP(i, n) {
    const std::int64_t j = i % c;
    const double scale = load_vec(weight, weight_dtype, j, 1.0) * inv[j];
    const double g = static_cast<double>(load(dy[i]));
    double v = scale * g;
    if (training) {
      const double xhat = (static_cast<double>(load(x[i])) - mean[j]) * inv[j];
      v = scale * (g - sum_g[j] / count - xhat * (sum_gx[j] / count));
    }
    dx[i] = store<T>(v);
  }
}

}  // namespace

void activation_backward(const Array& x, const Array& dy, const Array& rows, const ops::ActivationParams& params,
                         Array& dx) {
  const cudaStream_t stream = prepare(x);
  const std::int64_t capacity = x.dim(0), c = x.dim(1);
  if (capacity * c == 0) return;
  visit_float_device(x.dtype(), [&]<class T>() {
    activation_backward_kernel<T><<<grid_for_active(capacity * c, k_threads), k_threads, 0, stream>>>(
        ptr<const T>(x), ptr<const T>(dy), ptr<T>(dx), ptr<const std::int32_t>(rows), capacity, c, params.kind,
        static_cast<compute_t<T>>(params.negative_slope));
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

void binary_backward_rows(const Array& a, const Array& b, const Array& dy, const Array& rows, ops::BinaryOp op,
                          Array& ga, Array& gb) {
  const cudaStream_t stream = prepare(dy);
  const std::int64_t capacity = dy.dim(0), c = dy.dim(1);
  if (capacity * c == 0) return;
  visit_float_device(dy.dtype(), [&]<class T>() {
    binary_backward_kernel<T><<<grid_for_active(capacity * c, k_threads), k_threads, 0, stream>>>(
        ptr<const T>(a), ptr<const T>(b), ptr<const T>(dy), ptr<T>(ga), ptr<T>(gb), ptr<const std::int32_t>(rows),
        capacity, c, op);
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

void split_channels(const Array& dy, const Array& rows, Array& a, Array& b) {
  const cudaStream_t stream = prepare(dy);
  const std::int64_t capacity = dy.dim(0), c = dy.dim(1);
  if (capacity * c == 0) return;
  visit_float_device(dy.dtype(), [&]<class T>() {
    split_kernel<T><<<grid_for_active(capacity * c, k_threads), k_threads, 0, stream>>>(
        ptr<const T>(dy), ptr<T>(a), ptr<T>(b), ptr<const std::int32_t>(rows), capacity, a.dim(1), b.dim(1));
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

void row_norm_backward(const Array& x, const Array& dy, const Array& rows, const std::optional<Array>& weight,
                       double eps, bool center, Array& dx, Array* dweight, Array* dbias) {
  const cudaStream_t stream = prepare(x);
  const Device dev = x.device();
  const std::int64_t capacity = x.dim(0), c = x.dim(1);
  // Parameter gradients are zero for an empty tensor (the sums still run: they read the count).
  if (dweight != nullptr) *dweight = Array::zeros(Shape{c}, x.dtype(), dev);
  if (dbias != nullptr) *dbias = Array::zeros(Shape{c}, x.dtype(), dev);
  if (c == 0) return;
  const auto* rows_ptr = ptr<const std::int32_t>(rows);
  visit_float_device(x.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    const DType a_dtype = std::is_same_v<A, double> ? DType::f64 : DType::f32;
    const Array stats = Array::empty(Shape{2, capacity > 0 ? capacity : 1}, a_dtype, dev);
    A* row_mean = ptr<A>(stats);
    A* row_inv = row_mean + (capacity > 0 ? capacity : 1);
    if (capacity > 0) {
      row_norm_backward_kernel<T><<<grid_for_active(capacity, k_threads), k_threads, 0, stream>>>(
          ptr<const T>(x), ptr<const T>(dy), ptr<T>(dx), rows_ptr, capacity, c,
          weight ? ptr<const T>(*weight) : nullptr, static_cast<A>(eps), center, row_mean, row_inv);
      LATTICE_CUDA_LAUNCH_CHECK();
    }
    if (dweight == nullptr && dbias == nullptr) return;
    const Array partial = Array::empty(Shape{device::k_column_chunks, c}, DType::f64, dev);
    if (dweight != nullptr) {
      device::column_sums(rows_ptr, capacity, c,
                          RowGradXhatTerm<T>{ptr<const T>(x), ptr<const T>(dy), row_mean, row_inv, c},
                          StoreFinish{nullptr, dweight->raw(), dweight->dtype()}, ptr<double>(partial), stream);
    }
    if (dbias != nullptr) {
      device::column_sums(rows_ptr, capacity, c, ValueTerm<T>{ptr<const T>(dy), c},
                          StoreFinish{nullptr, dbias->raw(), dbias->dtype()}, ptr<double>(partial), stream);
    }
  });
}

// Training with fewer than two active rows gives NaN (as the forward).
void batch_norm_backward(const Array& x, const Array& dy, const Array& rows, const ops::BatchNormArgs& args, Array& dx,
                         Array* dweight, Array* dbias) {
  const cudaStream_t stream = prepare(x);
  const Device dev = x.device();
  const std::int64_t capacity = x.dim(0), c = x.dim(1);
  if (dweight != nullptr) *dweight = Array::zeros(Shape{c}, args.weight->dtype(), dev);
  if (dbias != nullptr) *dbias = Array::zeros(Shape{c}, args.bias->dtype(), dev);
  if (c == 0) return;
  const auto* rows_ptr = ptr<const std::int32_t>(rows);
  visit_float_device(x.dtype(), [&]<class T>() {
    // (4, C) float64: mean, 1/sqrt(var + eps), sum(dy), sum(dy * xhat).
    const Array stats = Array::empty(Shape{4, c}, DType::f64, dev);
    double* mean = ptr<double>(stats);
    double* inv = mean + c;
    double* sum_g = mean + 2 * c;
    double* sum_gx = mean + 3 * c;
    const Array partial = Array::empty(Shape{device::k_column_chunks, c, 2}, DType::f64, dev);
    double* part = ptr<double>(partial);
    const T* xp = ptr<const T>(x);
    const T* gp = ptr<const T>(dy);
    const StoreFinish store_g{sum_g, dbias != nullptr ? dbias->raw() : nullptr,
                              dbias != nullptr ? dbias->dtype() : DType::f64};
    const StoreFinish store_gx{sum_gx, dweight != nullptr ? dweight->raw() : nullptr,
                               dweight != nullptr ? dweight->dtype() : DType::f64};
    if (args.training && args.saved_stats) {
      // The forward's statistics (bitwise what the two passes below compute):
      // one pass for sum(dy) and sum(dy (x - mean)).
      mean = const_cast<double*>(ptr<const double>(*args.saved_stats));
      inv = mean + c;
      device::column_sums(rows_ptr, capacity, c, GradPairTerm<T>{xp, gp, mean, c}, SumsFinish{store_g, store_gx, inv},
                          part, stream);
    } else if (args.training) {
      // Two passes over the rows: (x, dy), then ((x - mean)^2, dy (x - mean)).
      device::column_sums(rows_ptr, capacity, c, ValuePairTerm<T>{xp, gp, c}, MeanAndStoreFinish{{mean}, store_g}, part,
                          stream);
      device::column_sums(rows_ptr, capacity, c, DevPairTerm<T>{xp, gp, mean, c},
                          InvStdAndStoreFinish{{inv, args.eps}, store_gx}, part, stream);
    } else {
      bn_running_stats_kernel<<<grid_for(c, k_threads), k_threads, 0, stream>>>(
          args.running_mean.raw(), args.running_mean.dtype(), args.running_var.raw(), args.running_var.dtype(),
          args.eps, mean, inv, c);
      LATTICE_CUDA_LAUNCH_CHECK();
      device::column_sums(rows_ptr, capacity, c, ValueTerm<T>{gp, c}, store_g, part, stream);
      device::column_sums(rows_ptr, capacity, c, BnGradXhatTerm<T>{xp, gp, mean, inv, c}, store_gx, part, stream);
    }
    if (capacity == 0) return;
    const void* w = args.weight ? args.weight->raw() : nullptr;
    const DType wd = args.weight ? args.weight->dtype() : DType::f32;
    bn_backward_kernel<T><<<grid_for_active(capacity * c, k_threads), k_threads, 0, stream>>>(
        xp, gp, ptr<T>(dx), rows_ptr, capacity, c, w, wd, mean, inv, sum_g, sum_gx, args.training);
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace lattice::cuda

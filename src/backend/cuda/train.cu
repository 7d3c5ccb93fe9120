// CUDA training kernels: optimizer updates, cross-entropy and confusion
// counts (see api_train.hpp). One thread per element (updates) or per row
// (loss), in the same operation order as backend/cpu/train_cpu.cpp with
// explicitly rounded arithmetic (no FMA contraction), so the optimizer
// updates match the CPU bit for bit and the loss to the last places (expf /
// logf differ from the host libm by an ulp or two).
//
// Reductions (loss sum, non-ignored row count) run in one block of
// k_reduce_threads: thread t adds rows t, t + k, ... in order, then a fixed
// shared-memory tree. The order depends only on the row count, so runs are
// bitwise identical; no floating-point atomics anywhere. Row counts are read
// on the device (read_count); nothing waits for the host.
#include <cstdint>
#include <limits>
#include <type_traits>

#include <cuda_runtime.h>

#include "backend/cuda/api_train.hpp"
#include "backend/cuda/device/common.cuh"
#include "backend/cuda/device/errors.cuh"
#include "backend/cuda/device/rounding.cuh"
#include "backend/cuda/errors.hpp"

namespace lattice::cuda {

namespace {

using device::add_rn;
using device::compute_t;
using device::div_rn;
using device::load;
using device::mul_rn;
using device::read_count;
using device::sqrt_rn;
using device::store;
using device::sub_rn;

constexpr int k_threads = 256;
constexpr int k_reduce_threads = 1024;

template <class A>
__device__ __forceinline__ A exp_of(A v) {
  if constexpr (std::is_same_v<A, float>) {
    return expf(v);
  } else {
    return exp(v);
  }
}

template <class A>
__device__ __forceinline__ A log_of(A v) {
  if constexpr (std::is_same_v<A, float>) {
    return logf(v);
  } else {
    return log(v);
  }
}

// ---- optimizer updates -----------------------------------------------------------------

template <class T, class A = compute_t<T>>
struct SgdArgs {
  A lr, wd, mom, keep;
  bool use_wd, use_momentum, nesterov, first;
};

template <class T>
__global__ void sgd_kernel(T* __restrict__ p, const T* __restrict__ g, compute_t<T>* __restrict__ buf, std::int64_t n,
                           SgdArgs<T> a) {
  using A = compute_t<T>;
  LATTICE_GRID_LOOP(i, n) {
    A gi = load(g[i]);
    A pi = load(p[i]);
    if (a.use_wd) gi = add_rn(gi, mul_rn(a.wd, pi));
    if (a.use_momentum) {
      const A b = a.first ? gi : add_rn(mul_rn(a.mom, buf[i]), mul_rn(a.keep, gi));
      buf[i] = b;
      gi = a.nesterov ? add_rn(gi, mul_rn(a.mom, b)) : b;
    }
    p[i] = store<T>(sub_rn(pi, mul_rn(a.lr, gi)));
  }
}

template <class T, class A = compute_t<T>>
struct AdamArgs {
  A decay, b1, c1, b2, c2, step_size, sqrt_bias2, eps;
};

template <class T>
__global__ void adamw_kernel(T* __restrict__ p, const T* __restrict__ g, compute_t<T>* __restrict__ m,
                             compute_t<T>* __restrict__ v, std::int64_t n, AdamArgs<T> a) {
  using A = compute_t<T>;
  LATTICE_GRID_LOOP(i, n) {
    const A gi = load(g[i]);
    const A pi = mul_rn(load(p[i]), a.decay);
    const A mi = add_rn(mul_rn(a.b1, m[i]), mul_rn(a.c1, gi));
    const A vi = add_rn(mul_rn(a.b2, v[i]), mul_rn(mul_rn(a.c2, gi), gi));
    m[i] = mi;
    v[i] = vi;
    const A denom = add_rn(div_rn(sqrt_rn(vi), a.sqrt_bias2), a.eps);
    p[i] = store<T>(sub_rn(pi, mul_rn(a.step_size, div_rn(mi, denom))));
  }
}

// ---- cross-entropy ---------------------------------------------------------------------

struct CeArgs {
  std::int64_t capacity, c, ignore;
  double keep, per_class;  // 1 - s and s / C
  bool smooth;
  ErrorSlot* slot;
  int op;
};

__device__ __forceinline__ std::int64_t rows_of(const std::int32_t* count, std::int64_t capacity) {
  return count != nullptr ? read_count(count, capacity) : capacity;
}

// Label check: true for a label that counts; an out-of-range one records an error.
__device__ __forceinline__ bool valid_label(std::int32_t y, std::int64_t r, const CeArgs& a) {
  if (static_cast<std::int64_t>(y) == a.ignore) return false;
  if (y < 0 || y >= a.c) {
    device::record_error(a.slot, ErrorCode::label_out_of_range, a.op, r, y, a.c);
    return false;
  }
  return true;
}

// Same steps as cpu row_lse.
template <class T, class A = compute_t<T>>
__device__ A row_lse(const T* x, std::int64_t c) {
  A mx = -std::numeric_limits<A>::infinity();
  for (std::int64_t j = 0; j < c; ++j) {
    const A v = load(x[j]);
    if (v > mx || isnan(v)) mx = v;
    if (isnan(mx)) break;
  }
  if (isnan(mx) || isinf(mx)) return mx;
  A s = 0;
  for (std::int64_t j = 0; j < c; ++j) s = add_rn(s, exp_of(sub_rn(load(x[j]), mx)));
  return add_rn(mx, log_of(s));
}

// Per row: loss (0 when not counted), log-sum-exp and whether the row counts.
template <class T>
__global__ void ce_rows_kernel(const T* __restrict__ x, const std::int32_t* __restrict__ labels,
                               const std::int32_t* __restrict__ count, CeArgs a, double* __restrict__ row_loss,
                               double* __restrict__ row_lse_out, std::int32_t* __restrict__ row_valid) {
  using A = compute_t<T>;
  const std::int64_t rows = rows_of(count, a.capacity);
  LATTICE_GRID_LOOP(r, rows) {
    const std::int32_t y = labels[r];
    const bool ok = valid_label(y, r, a);
    row_valid[r] = ok ? 1 : 0;
    row_loss[r] = 0.0;
    if (!ok) continue;
    const T* xi = x + r * a.c;
    const A lse = row_lse<T>(xi, a.c);
    row_lse_out[r] = static_cast<double>(lse);
    A loss = mul_rn(static_cast<A>(a.keep), sub_rn(lse, load(xi[y])));
    if (a.smooth) {
      A s = 0;
      for (std::int64_t j = 0; j < a.c; ++j) s = add_rn(s, sub_rn(lse, load(xi[j])));
      loss = add_rn(loss, mul_rn(static_cast<A>(a.per_class), s));
    }
    row_loss[r] = static_cast<double>(loss);
  }
}

// One block: the loss (sum, or mean over counted rows; 0 when none) and the count.
template <class Out>
__global__ void __launch_bounds__(k_reduce_threads)
    ce_reduce_kernel(const double* __restrict__ row_loss, const std::int32_t* __restrict__ row_valid,
                     const std::int32_t* __restrict__ count, std::int64_t capacity, bool mean, Out* __restrict__ loss,
                     std::int64_t* __restrict__ valid_out) {
  __shared__ double sums[k_reduce_threads];
  __shared__ long long counts[k_reduce_threads];
  const std::int64_t rows = rows_of(count, capacity);
  const int t = static_cast<int>(threadIdx.x);
  double s = 0.0;
  long long n = 0;
  for (std::int64_t r = t; r < rows; r += k_reduce_threads) {
    s = __dadd_rn(s, row_loss[r]);
    n += row_valid[r];
  }
  sums[t] = s;
  counts[t] = n;
  __syncthreads();
  for (int stride = k_reduce_threads / 2; stride > 0; stride >>= 1) {
    if (t < stride) {
      sums[t] = __dadd_rn(sums[t], sums[t + stride]);
      counts[t] += counts[t + stride];
    }
    __syncthreads();
  }
  if (t == 0) {
    double total = sums[0];
    if (mean) total = counts[0] > 0 ? __ddiv_rn(total, static_cast<double>(counts[0])) : 0.0;
    if (loss != nullptr) *loss = static_cast<Out>(total);
    if (valid_out != nullptr) *valid_out = counts[0];
  }
}

// d loss / d x for every element of the capacity (0 past the rows and on rows that do not count).
template <class T>
__global__ void ce_grad_kernel(const T* __restrict__ x, const std::int32_t* __restrict__ labels,
                               const std::int32_t* __restrict__ count, CeArgs a, bool mean,
                               const double* __restrict__ grad_loss, const std::int64_t* __restrict__ valid,
                               const double* __restrict__ row_lse_in, const std::int32_t* __restrict__ row_valid,
                               T* __restrict__ out) {
  using A = compute_t<T>;
  const std::int64_t rows = rows_of(count, a.capacity);
  const double g = grad_loss != nullptr ? *grad_loss : 1.0;
  const std::int64_t n = *valid;
  const double scale64 = mean ? (n > 0 ? __ddiv_rn(g, static_cast<double>(n)) : 0.0) : g;
  const A scale = static_cast<A>(scale64);
  const A keep = static_cast<A>(a.keep), per_class = static_cast<A>(a.per_class);
  LATTICE_GRID_LOOP(i, a.capacity * a.c) {
    const std::int64_t r = i / a.c;
    const std::int64_t j = i - r * a.c;
    if (r >= rows || row_valid[r] == 0) {
      out[i] = store<T>(A{0});
      continue;
    }
    const A lse = static_cast<A>(row_lse_in[r]);
    const A target = add_rn(j == labels[r] ? keep : A{0}, per_class);
    out[i] = store<T>(mul_rn(scale, sub_rn(exp_of(sub_rn(load(x[i]), lse)), target)));
  }
}

CeArgs ce_args(const Array& logits, const nn::CrossEntropyParams& p, const char* op) {
  const std::int64_t c = logits.dim(1);
  return CeArgs{logits.dim(0),
                c,
                p.ignore_index,
                1.0 - p.label_smoothing,
                p.label_smoothing / static_cast<double>(c),
                p.label_smoothing != 0.0,
                error_slot(logits.device().index),
                op_id(op)};
}

// Per-row buffers (loss, lse, valid) filled by ce_rows_kernel.
struct RowBuffers {
  Array loss, lse, valid;
};

RowBuffers ce_rows(const Array& logits, const Array& count, const Array& labels, const CeArgs& a, cudaStream_t stream) {
  const Device dev = logits.device();
  const std::int64_t cap = logits.dim(0);
  RowBuffers b{Array::empty(Shape{cap}, DType::f64, dev), Array::empty(Shape{cap}, DType::f64, dev),
               Array::empty(Shape{cap}, DType::i32, dev)};
  if (cap == 0) return b;
  const auto* cnt = count.defined() ? ptr<const std::int32_t>(count) : nullptr;
  visit_float_device(logits.dtype(), [&]<class T>() {
    ce_rows_kernel<T><<<grid_for_active(cap, k_threads), k_threads, 0, stream>>>(
        ptr<const T>(logits), ptr<const std::int32_t>(labels), cnt, a, ptr<double>(b.loss), ptr<double>(b.lse),
        ptr<std::int32_t>(b.valid));
    LATTICE_CUDA_LAUNCH_CHECK();
  });
  return b;
}

}  // namespace

void sgd_update(const Array& value, const Array& grad, const Array& momentum, const lattice::detail::SgdUpdate& u) {
  const std::int64_t n = value.numel();
  if (n == 0) return;
  LATTICE_CUDA_CHECK(cudaSetDevice(value.device().index));
  const cudaStream_t stream = stream_of(value.device());
  visit_float_device(value.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    const SgdArgs<T> a{static_cast<A>(u.lr),
                       static_cast<A>(u.weight_decay),
                       static_cast<A>(u.momentum),
                       static_cast<A>(u.one_minus_dampening),
                       u.weight_decay != 0.0,
                       u.momentum != 0.0,
                       u.nesterov,
                       u.first};
    A* buf = u.momentum != 0.0 ? static_cast<A*>(momentum.raw()) : nullptr;
    sgd_kernel<T><<<grid_for(n, k_threads), k_threads, 0, stream>>>(ptr<T>(value), ptr<const T>(grad), buf, n, a);
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

void adamw_update(const Array& value, const Array& grad, const Array& exp_avg, const Array& exp_avg_sq,
                  const lattice::detail::AdamWUpdate& u) {
  const std::int64_t n = value.numel();
  if (n == 0) return;
  LATTICE_CUDA_CHECK(cudaSetDevice(value.device().index));
  const cudaStream_t stream = stream_of(value.device());
  visit_float_device(value.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    const AdamArgs<T> a{static_cast<A>(u.decay),           static_cast<A>(u.beta1),
                        static_cast<A>(u.one_minus_beta1), static_cast<A>(u.beta2),
                        static_cast<A>(u.one_minus_beta2), static_cast<A>(u.step_size),
                        static_cast<A>(u.sqrt_bias2),      static_cast<A>(u.eps)};
    adamw_kernel<T><<<grid_for(n, k_threads), k_threads, 0, stream>>>(
        ptr<T>(value), ptr<const T>(grad), static_cast<A*>(exp_avg.raw()), static_cast<A*>(exp_avg_sq.raw()), n, a);
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

Array cross_entropy(const Array& logits, const Array& count, const Array& labels, const nn::CrossEntropyParams& params,
                    const char* op) {
  const Device dev = logits.device();
  LATTICE_CUDA_CHECK(cudaSetDevice(dev.index));
  const cudaStream_t stream = stream_of(dev);
  const CeArgs a = ce_args(logits, params, op);
  const RowBuffers b = ce_rows(logits, count, labels, a, stream);
  const bool f64 = logits.dtype() == DType::f64;
  Array loss = Array::empty(Shape{}, f64 ? DType::f64 : DType::f32, dev);
  const auto* cnt = count.defined() ? ptr<const std::int32_t>(count) : nullptr;
  const bool mean = params.reduction == nn::Reduction::mean;
  if (f64) {
    ce_reduce_kernel<double><<<1, k_reduce_threads, 0, stream>>>(
        ptr<const double>(b.loss), ptr<const std::int32_t>(b.valid), cnt, a.capacity, mean, ptr<double>(loss), nullptr);
  } else {
    ce_reduce_kernel<float><<<1, k_reduce_threads, 0, stream>>>(
        ptr<const double>(b.loss), ptr<const std::int32_t>(b.valid), cnt, a.capacity, mean, ptr<float>(loss), nullptr);
  }
  LATTICE_CUDA_LAUNCH_CHECK();
  return loss;
}

Array cross_entropy_backward(const Array& logits, const Array& count, const Array& labels,
                             const nn::CrossEntropyParams& params, const Array& grad_loss, const char* op) {
  const Device dev = logits.device();
  LATTICE_CUDA_CHECK(cudaSetDevice(dev.index));
  const cudaStream_t stream = stream_of(dev);
  const CeArgs a = ce_args(logits, params, op);
  const RowBuffers b = ce_rows(logits, count, labels, a, stream);
  const auto* cnt = count.defined() ? ptr<const std::int32_t>(count) : nullptr;
  const bool mean = params.reduction == nn::Reduction::mean;
  Array valid = Array::empty(Shape{}, DType::i64, dev);
  ce_reduce_kernel<double><<<1, k_reduce_threads, 0, stream>>>(ptr<const double>(b.loss),
                                                               ptr<const std::int32_t>(b.valid), cnt, a.capacity, mean,
                                                               nullptr, ptr<std::int64_t>(valid));
  LATTICE_CUDA_LAUNCH_CHECK();
  Array g64 = grad_loss.defined() ? grad_loss.reshape(Shape{}).astype(DType::f64) : Array();
  Array out = Array::empty(logits.shape(), logits.dtype(), dev);
  const std::int64_t n = logits.numel();
  if (n == 0) return out;
  visit_float_device(logits.dtype(), [&]<class T>() {
    ce_grad_kernel<T><<<grid_for(n, k_threads), k_threads, 0, stream>>>(
        ptr<const T>(logits), ptr<const std::int32_t>(labels), cnt, a, mean,
        g64.defined() ? ptr<const double>(g64) : nullptr, ptr<const std::int64_t>(valid), ptr<const double>(b.lse),
        ptr<const std::int32_t>(b.valid), ptr<T>(out));
    LATTICE_CUDA_LAUNCH_CHECK();
  });
  return out;
}

// ---- confusion counts ------------------------------------------------------------------

namespace {

// Class id of row i: the id itself, or the argmax of the scores (ties to the lower class, NaN never wins).
template <class P>
__device__ __forceinline__ std::int64_t predicted(const P* pred, std::int64_t i, std::int64_t c) {
  if constexpr (std::is_same_v<P, std::int32_t> || std::is_same_v<P, std::int64_t>) {
    return static_cast<std::int64_t>(pred[i]);
  } else {
    const P* x = pred + i * c;
    std::int64_t best = 0;
    auto best_v = load(x[0]);
    for (std::int64_t j = 1; j < c; ++j) {
      const auto v = load(x[j]);
      if (v > best_v || (isnan(best_v) && !isnan(v))) {
        best = j;
        best_v = v;
      }
    }
    return best;
  }
}

// Integer atomics only: the counts are exact and order-independent.
template <class P>
__global__ void confusion_kernel(const P* __restrict__ pred, const std::int32_t* __restrict__ labels, std::int64_t n,
                                 std::int64_t c, std::int64_t ignore, unsigned long long* __restrict__ cm,
                                 ErrorSlot* slot, int op) {
  LATTICE_GRID_LOOP(i, n) {
    const std::int64_t y = labels[i];
    if (y == ignore) continue;
    if (y < 0 || y >= c) {
      device::record_error(slot, ErrorCode::label_out_of_range, op, i, y, c);
      continue;
    }
    const std::int64_t p = predicted(pred, i, c);
    if (p < 0 || p >= c) {
      device::record_error(slot, ErrorCode::prediction_out_of_range, op, i, p, c);
      continue;
    }
    atomicAdd(cm + y * c + p, 1ULL);
  }
}

}  // namespace

Array confusion_matrix(const Array& pred, const Array& labels, std::int64_t num_classes, std::int64_t ignore_index,
                       const char* op) {
  const Device dev = pred.device();
  LATTICE_CUDA_CHECK(cudaSetDevice(dev.index));
  const cudaStream_t stream = stream_of(dev);
  Array out = Array::zeros(Shape{num_classes, num_classes}, DType::i64, dev);
  const std::int64_t n = labels.dim(0);
  if (n == 0) return out;
  auto* cm = static_cast<unsigned long long*>(out.raw());
  ErrorSlot* slot = error_slot(dev.index);
  const int id = op_id(op);
  auto launch = [&]<class P>() {
    confusion_kernel<P><<<grid_for(n, k_threads), k_threads, 0, stream>>>(
        ptr<const P>(pred), ptr<const std::int32_t>(labels), n, num_classes, ignore_index, cm, slot, id);
    LATTICE_CUDA_LAUNCH_CHECK();
  };
  if (pred.dtype() == DType::i32) {
    launch.template operator()<std::int32_t>();
  } else if (pred.dtype() == DType::i64) {
    launch.template operator()<std::int64_t>();
  } else {
    visit_float_device(pred.dtype(), [&]<class T>() { launch.template operator()<T>(); });
  }
  return out;
}

}  // namespace lattice::cuda

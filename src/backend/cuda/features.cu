// CUDA feature ops over the active rows (SPEC §7, Appendix A "Feature ops").
//
// The active row count lives on the device and is read by every kernel
// (read_count); rows past it are capacity and are not touched (capacities
// propagate through a network, so writing them would cost a full pass at the
// largest level's size on every layer). Everything is enqueued on the device's current stream;
// nothing waits for the host and nothing is read back.
//
// Numerics: 16-bit storage computes in float32 and rounds once on store;
// float64 computes in float64. batch_norm's statistics are float64 sums in a
// fixed order (device/reduce.cuh), so runs are bitwise identical; its
// normalisation uses explicitly rounded multiply and add (no FMA contraction),
// as the CPU does with -ffp-contract=off. No floating-point atomics.
#include <cmath>
#include <cstdint>
#include <limits>

#include <cuda_runtime.h>

#include "backend/cuda/api.hpp"
#include "backend/cuda/device/common.cuh"
#include "backend/cuda/device/reduce.cuh"
#include "backend/cuda/device/rounding.cuh"
#include "backend/cuda/device/vec_io.cuh"

namespace lattice::cuda {

namespace {

using device::compute_t;
using device::load;
using device::read_count;
using device::store;

constexpr int k_threads = 256;
// 32-bit index arithmetic (cheaper divisions) while index + grid stride cannot
// wrap: grid_for launches at most 65535 * 32 * 256 < 2^31 threads.
constexpr std::uint64_t k_max_32bit_total = std::uint64_t{1} << 31;

// Explicitly rounded arithmetic (device/rounding.cuh).

using device::add_rn;
using device::mul_rn;

__device__ __forceinline__ double quiet_nan() { return __longlong_as_double(0x7ff8000000000000LL); }

// Elements of the active rows and of the whole capacity, for a (capacity, c) array.
struct Extent {
  std::int64_t capacity;
  std::int64_t c;
};

// ---- activations ---------------------------------------------------------------

// Same formulas as backend/cpu/features_cpu.cpp, in the compute type A.
template <ops::ActivationKind K, class A>
__device__ __forceinline__ A apply_activation(A v, A slope) {
  using Kind = ops::ActivationKind;
  constexpr bool f = std::is_same_v<A, float>;
  if constexpr (K == Kind::relu) {
    return v > A{0} ? v : A{0};
  } else if constexpr (K == Kind::leaky_relu) {
    return v > A{0} ? v : slope * v;
  } else if constexpr (K == Kind::gelu) {
    if constexpr (f) {
      return 0.5f * v * (1.0f + erff(v / sqrtf(2.0f)));
    } else {
      return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    }
  } else if constexpr (K == Kind::gelu_tanh) {
    if constexpr (f) {
      const float k = sqrtf(2.0f / 3.14159265358979323846f);
      return 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
    } else {
      const double k = sqrt(2.0 / 3.14159265358979323846);
      return 0.5 * v * (1.0 + tanh(k * (v + 0.044715 * v * v * v)));
    }
  } else if constexpr (K == Kind::silu) {
    if constexpr (f) {
      return v / (1.0f + expf(-v));
    } else {
      return v / (1.0 + exp(-v));
    }
  } else if constexpr (K == Kind::sigmoid) {
    if constexpr (f) {
      return 1.0f / (1.0f + expf(-v));
    } else {
      return 1.0 / (1.0 + exp(-v));
    }
  } else if constexpr (K == Kind::tanh) {
    if constexpr (f) {
      return tanhf(v);
    } else {
      return tanh(v);
    }
  } else {  // softplus: beta 1, threshold 20
    if constexpr (f) {
      return v > 20.0f ? v : log1pf(expf(v));
    } else {
      return v > 20.0 ? v : log1p(exp(v));
    }
  }
}

template <ops::ActivationKind K, class T>
__global__ void activation_kernel(const T* __restrict__ x, T* __restrict__ y, const std::int32_t* rows_ptr, Extent e,
                                  compute_t<T> slope) {
  const std::int64_t active = read_count(rows_ptr, e.capacity) * e.c;
  LATTICE_GRID_LOOP(i, active) { y[i] = store<T>(apply_activation<K>(load(x[i]), slope)); }
}

template <ops::ActivationKind K, class T>
void launch_activation(const Array& x, const Array& rows, double slope, Array& out, Extent e, cudaStream_t stream) {
  activation_kernel<K, T><<<grid_for_active(e.capacity * e.c, k_threads), k_threads, 0, stream>>>(
      ptr<const T>(x), ptr<T>(out), ptr<const std::int32_t>(rows), e, static_cast<compute_t<T>>(slope));
  LATTICE_CUDA_LAUNCH_CHECK();
}

// ---- add / cat -------------------------------------------------------------------

template <class T>
__global__ void add_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ y,
                           const std::int32_t* rows_ptr, Extent e) {
  const std::int64_t active = read_count(rows_ptr, e.capacity) * e.c;
  LATTICE_GRID_LOOP(i, active) { y[i] = store<T>(load(a[i]) + load(b[i])); }
}

// Row r of the output is [a row r, b row r] as raw words of type W (the widest
// word that divides both row sizes and every address).
template <class W, class I>
__global__ void cat_kernel(const W* __restrict__ a, const W* __restrict__ b, W* __restrict__ y,
                           const std::int32_t* rows_ptr, I capacity, I wa, I wb) {
  const I rows = static_cast<I>(read_count(rows_ptr, static_cast<std::int64_t>(capacity)));
  const I w = wa + wb;
  const I total = rows * w;
  const I step = static_cast<I>(gridDim.x) * blockDim.x;
  for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step) {
    const I r = i / w;
    const I k = i - r * w;
    y[i] = k < wa ? a[r * wa + k] : b[r * wb + (k - wa)];
  }
}

template <class W>
void launch_cat(const Array& a, const Array& b, const Array& rows, Array& out, cudaStream_t stream) {
  const auto wa = static_cast<std::uint64_t>(a.row_bytes() / sizeof(W));
  const auto wb = static_cast<std::uint64_t>(b.row_bytes() / sizeof(W));
  const auto capacity = static_cast<std::uint64_t>(out.dim(0));
  const std::uint64_t total = capacity * (wa + wb);
  const unsigned blocks = grid_for_active(static_cast<std::int64_t>(total), k_threads);
  const auto* rp = ptr<const std::int32_t>(rows);
  if (total <= k_max_32bit_total) {
    cat_kernel<W, std::uint32_t><<<blocks, k_threads, 0, stream>>>(
        ptr<const W>(a), ptr<const W>(b), ptr<W>(out), rp, static_cast<std::uint32_t>(capacity),
        static_cast<std::uint32_t>(wa), static_cast<std::uint32_t>(wb));
  } else {
    cat_kernel<W, std::uint64_t>
        <<<blocks, k_threads, 0, stream>>>(ptr<const W>(a), ptr<const W>(b), ptr<W>(out), rp, capacity, wa, wb);
  }
  LATTICE_CUDA_LAUNCH_CHECK();
}

// ---- batch norm ------------------------------------------------------------------

// A (C,) vector of any floating dtype, read as float64 (absent: `fallback`).
struct VecRef {
  const void* data = nullptr;
  DType dtype = DType::f32;
};

__device__ __forceinline__ double load_vec(const VecRef& v, std::int64_t j, double fallback) {
  return device::load_vec(v.data, v.dtype, j, fallback);
}

using device::store_vec;

// Per-channel inputs and outputs of batch norm; A is the compute type.
template <class A>
struct BnChannels {
  VecRef weight, bias, running_mean, running_var;
  void* new_mean = nullptr;  // training only; dtype of running_mean
  void* new_var = nullptr;   // training only; dtype of running_var
  double momentum = 0.1;
  double keep = 0.9;  // 1 - momentum, rounded on the host as the CPU does
  double eps = 1e-5;
  A* scale = nullptr;  // (C,) y = x * scale + shift
  A* shift = nullptr;
};

// scale = gamma / sqrt(var + eps), shift = beta - mean * gamma / sqrt(var + eps),
// evaluated in float64 in the CPU's order, then rounded to A.
template <class A>
__device__ __forceinline__ void bn_affine(const BnChannels<A>& p, std::int64_t j, double mean, double var) {
  const double gamma = load_vec(p.weight, j, 1.0);
  const double beta = load_vec(p.bias, j, 0.0);
  const double inv = __ddiv_rn(1.0, __dsqrt_rn(__dadd_rn(var, p.eps)));
  p.scale[j] = static_cast<A>(__dmul_rn(gamma, inv));
  p.shift[j] = static_cast<A>(__dsub_rn(beta, __dmul_rn(__dmul_rn(mean, gamma), inv)));
}

// Eval: normalise with the running statistics.
template <class A>
__global__ void bn_eval_affine_kernel(BnChannels<A> p, std::int64_t c) {
  LATTICE_GRID_LOOP(j, c) { bn_affine(p, j, load_vec(p.running_mean, j, 0.0), load_vec(p.running_var, j, 1.0)); }
}

// Training pass 1 term and finish: mean[j] = sum / rows (NaN when rows < 2).
template <class T>
struct SumTerm {
  const T* x;
  std::int64_t c;
  __device__ double operator()(std::int64_t r, std::int64_t j) const { return static_cast<double>(load(x[r * c + j])); }
};

struct MeanFinish {
  double* mean;
  double* saved;  // optional (C,) copy for the VJP
  __device__ void operator()(std::int64_t j, double total, std::int64_t rows) const {
    mean[j] = rows < 2 ? quiet_nan() : __ddiv_rn(total, static_cast<double>(rows));
    if (saved != nullptr) saved[j] = mean[j];
  }
};

// Training pass 2 term and finish: squared deviations from the batch mean,
// then the biased variance for normalisation and the running-stat update
// with the unbiased one.
template <class T>
struct SquareDevTerm {
  const T* x;
  const double* mean;
  std::int64_t c;
  __device__ double operator()(std::int64_t r, std::int64_t j) const {
    const double d = static_cast<double>(load(x[r * c + j])) - mean[j];
    return __dmul_rn(d, d);
  }
};

template <class A>
struct VarFinish {
  BnChannels<A> p;
  const double* mean;
  DType mean_dtype;
  DType var_dtype;
  double* saved_inv;  // optional (C,): 1 / sqrt(var + eps), as the VJP computes it
  __device__ void operator()(std::int64_t j, double total, std::int64_t rows) const {
    double m = mean[j];
    double biased = quiet_nan();
    double unbiased = quiet_nan();
    if (rows >= 2) {
      biased = __ddiv_rn(total, static_cast<double>(rows));
      unbiased = __ddiv_rn(total, static_cast<double>(rows - 1));
    } else {
      m = quiet_nan();
    }
    const double old_mean = load_vec(p.running_mean, j, 0.0);
    const double old_var = load_vec(p.running_var, j, 1.0);
    store_vec(p.new_mean, mean_dtype, j, __dadd_rn(__dmul_rn(p.keep, old_mean), __dmul_rn(p.momentum, m)));
    store_vec(p.new_var, var_dtype, j, __dadd_rn(__dmul_rn(p.keep, old_var), __dmul_rn(p.momentum, unbiased)));
    if (saved_inv != nullptr) saved_inv[j] = 1.0 / sqrt(total / static_cast<double>(rows) + p.eps);
    bn_affine(p, j, m, biased);
  }
};

template <class T, class I>
__global__ void bn_apply_kernel(const T* __restrict__ x, T* __restrict__ y, const std::int32_t* rows_ptr,
                                const compute_t<T>* __restrict__ scale, const compute_t<T>* __restrict__ shift,
                                I capacity, I c) {
  const I rows = static_cast<I>(read_count(rows_ptr, static_cast<std::int64_t>(capacity)));
  const I active = rows * c;
  const I step = static_cast<I>(gridDim.x) * blockDim.x;
  for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < active; i += step) {
    const I j = i % c;
    y[i] = store<T>(add_rn(mul_rn(load(x[i]), scale[j]), shift[j]));
  }
}

VecRef vec_ref(const std::optional<Array>& v) {
  if (!v || !v->defined()) return {};
  return {v->raw(), v->dtype()};
}

cudaStream_t prepare(const Array& x) {
  LATTICE_CUDA_CHECK(cudaSetDevice(x.device().index));
  return stream_of(x.device());
}

}  // namespace

void activation(const Array& x, const Array& rows, const ops::ActivationParams& params, Array& out) {
  const cudaStream_t stream = prepare(x);
  const Extent e{x.dim(0), x.dim(1)};
  if (e.capacity * e.c == 0) return;
  visit_float_device(x.dtype(), [&]<class T>() {
    using Kind = ops::ActivationKind;
    const double s = params.negative_slope;
    switch (params.kind) {
      case Kind::relu:
        launch_activation<Kind::relu, T>(x, rows, s, out, e, stream);
        break;
      case Kind::leaky_relu:
        launch_activation<Kind::leaky_relu, T>(x, rows, s, out, e, stream);
        break;
      case Kind::gelu:
        launch_activation<Kind::gelu, T>(x, rows, s, out, e, stream);
        break;
      case Kind::gelu_tanh:
        launch_activation<Kind::gelu_tanh, T>(x, rows, s, out, e, stream);
        break;
      case Kind::silu:
        launch_activation<Kind::silu, T>(x, rows, s, out, e, stream);
        break;
      case Kind::sigmoid:
        launch_activation<Kind::sigmoid, T>(x, rows, s, out, e, stream);
        break;
      case Kind::tanh:
        launch_activation<Kind::tanh, T>(x, rows, s, out, e, stream);
        break;
      case Kind::softplus:
        launch_activation<Kind::softplus, T>(x, rows, s, out, e, stream);
        break;
    }
  });
}

void add_rows(const Array& a, const Array& b, const Array& rows, Array& out) {
  if (b.dtype() != a.dtype()) {
    throw TypeError(lattice::detail::concat("[add] argument 'b': dtype ", dtype_name(b.dtype()), " differs from a's ",
                                            dtype_name(a.dtype())));
  }
  const cudaStream_t stream = prepare(a);
  const Extent e{a.dim(0), a.dim(1)};
  if (e.capacity * e.c == 0) return;
  visit_float_device(a.dtype(), [&]<class T>() {
    add_kernel<T><<<grid_for_active(e.capacity * e.c, k_threads), k_threads, 0, stream>>>(
        ptr<const T>(a), ptr<const T>(b), ptr<T>(out), ptr<const std::int32_t>(rows), e);
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

void cat_channels(const Array& a, const Array& b, const Array& rows, Array& out) {
  const cudaStream_t stream = prepare(a);
  if (out.numel() == 0) return;  // empty arrays may have no storage at all
  // Widest word dividing both row sizes and all three addresses.
  const auto align = reinterpret_cast<std::uintptr_t>(a.raw()) | reinterpret_cast<std::uintptr_t>(b.raw()) |
                     reinterpret_cast<std::uintptr_t>(out.raw()) | a.row_bytes() | b.row_bytes();
  if (align % 16 == 0) {
    launch_cat<uint4>(a, b, rows, out, stream);
  } else if (align % 8 == 0) {
    launch_cat<std::uint64_t>(a, b, rows, out, stream);
  } else if (align % 4 == 0) {
    launch_cat<std::uint32_t>(a, b, rows, out, stream);
  } else if (align % 2 == 0) {
    launch_cat<std::uint16_t>(a, b, rows, out, stream);
  } else {
    launch_cat<std::uint8_t>(a, b, rows, out, stream);
  }
}

// Training with fewer than two active rows (the host cannot check the device
// count) gives NaN batch statistics: the normalised rows and both new running
// statistics are NaN, instead of a crash.
void batch_norm(const Array& x, const Array& rows, const ops::BatchNormArgs& args, Array& out, Array& running_mean,
                Array& running_var, Array* saved) {
  const cudaStream_t stream = prepare(x);
  const Device dev = x.device();
  const std::int64_t capacity = x.dim(0);
  const std::int64_t c = x.dim(1);
  if (args.training) {
    running_mean = Array::empty(Shape{c}, args.running_mean.dtype(), dev);
    running_var = Array::empty(Shape{c}, args.running_var.dtype(), dev);
    if (saved != nullptr) *saved = Array::empty(Shape{2, c}, DType::f64, dev);
  } else {
    running_mean = args.running_mean;
    running_var = args.running_var;
  }
  if (c == 0) return;
  const auto* rows_ptr = ptr<const std::int32_t>(rows);
  visit_float_device(x.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    const DType a_dtype = std::is_same_v<A, double> ? DType::f64 : DType::f32;
    const Array affine = Array::empty(Shape{2, c}, a_dtype, dev);
    BnChannels<A> p;
    p.weight = vec_ref(args.weight);
    p.bias = vec_ref(args.bias);
    p.running_mean = vec_ref(args.running_mean);
    p.running_var = vec_ref(args.running_var);
    p.momentum = args.momentum;
    p.keep = 1.0 - args.momentum;
    p.eps = args.eps;
    p.scale = ptr<A>(affine);
    p.shift = ptr<A>(affine) + c;
    if (args.training) {
      p.new_mean = running_mean.raw();
      p.new_var = running_var.raw();
      const Array partial =
          Array::empty(Shape{device::k_column_chunks, c}, DType::f64, dev);  // chunk sums, reused by both passes
      const Array mean = Array::empty(Shape{c}, DType::f64, dev);
      const T* xp = ptr<const T>(x);
      double* saved_mean = saved != nullptr ? ptr<double>(*saved) : nullptr;
      double* saved_inv = saved != nullptr ? saved_mean + c : nullptr;
      device::column_sums(rows_ptr, capacity, c, SumTerm<T>{xp, c}, MeanFinish{ptr<double>(mean), saved_mean},
                          ptr<double>(partial), stream);
      device::column_sums(
          rows_ptr, capacity, c, SquareDevTerm<T>{xp, ptr<const double>(mean), c},
          VarFinish<A>{p, ptr<const double>(mean), running_mean.dtype(), running_var.dtype(), saved_inv},
          ptr<double>(partial), stream);
    } else {
      bn_eval_affine_kernel<A><<<grid_for(c, k_threads), k_threads, 0, stream>>>(p, c);
      LATTICE_CUDA_LAUNCH_CHECK();
    }
    if (capacity == 0) return;
    const std::int64_t total = capacity * c;
    const unsigned blocks = grid_for_active(total, k_threads);
    if (static_cast<std::uint64_t>(total) <= k_max_32bit_total) {
      bn_apply_kernel<T, std::uint32_t>
          <<<blocks, k_threads, 0, stream>>>(ptr<const T>(x), ptr<T>(out), rows_ptr, p.scale, p.shift,
                                             static_cast<std::uint32_t>(capacity), static_cast<std::uint32_t>(c));
    } else {
      bn_apply_kernel<T, std::uint64_t>
          <<<blocks, k_threads, 0, stream>>>(ptr<const T>(x), ptr<T>(out), rows_ptr, p.scale, p.shift,
                                             static_cast<std::uint64_t>(capacity), static_cast<std::uint64_t>(c));
    }
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace lattice::cuda

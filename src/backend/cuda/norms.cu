// CUDA dropout and per-row norms (SPEC Appendix A "Feature ops"). The same
// arithmetic as backend/cpu/norms_cpu.cpp, operation for operation, with
// explicitly rounded intrinsics (no FMA contraction), so results match the
// CPU bit for bit in float32/float64 (and after rounding, in 16-bit storage).
//
// layer_norm / rms_norm: one thread per active row, channels summed in index
// order (fixed order, deterministic). Rows of a row-major matrix are far
// apart, so this favours simplicity over coalescing. dropout: one thread per
// element, the shared counter-based generator (detail::dropout_keep).
// Device counts are read by the kernels; nothing waits for the host; rows
// past the count are capacity and are not written.
#include <cstdint>

#include "backend/cpu/api_resample.hpp"  // detail::dropout_keep (constexpr, compiled for the device)
#include "backend/cuda/api.hpp"
#include "backend/cuda/device/common.cuh"
#include "backend/cuda/device/rounding.cuh"

namespace lattice::cuda {

namespace {

using device::compute_t;
using device::load;
using device::read_count;
using device::store;

constexpr int k_threads = 256;

using device::add_rn;
using device::div_rn;
using device::mul_rn;
using device::sqrt_rn;
using device::sub_rn;

cudaStream_t prepare(const Array& x) {
  LATTICE_CUDA_CHECK(cudaSetDevice(x.device().index));
  return stream_of(x.device());
}

template <class T>
__global__ void dropout_kernel(const T* __restrict__ x, T* __restrict__ y, const std::int32_t* rows_ptr,
                               std::int64_t capacity, std::int64_t c, double p, std::uint64_t seed,
                               compute_t<T> scale) {
  using A = compute_t<T>;
  const std::int64_t n = read_count(rows_ptr, capacity) * c;
  LATTICE_GRID_LOOP(i, n) {
    const std::int64_t r = i / c;
    const std::int64_t j = i - r * c;
    const bool keep = detail::dropout_keep(seed, static_cast<std::uint64_t>(r), static_cast<std::uint64_t>(j), p);
    y[i] = store<T>(keep ? mul_rn(load(x[i]), scale) : A{0});
  }
}

// weight/bias: optional (C,) in the storage type (null: 1 and 0).
template <class T, bool Layer>
__global__ void norm_kernel(const T* __restrict__ x, T* __restrict__ y, const std::int32_t* rows_ptr,
                            std::int64_t capacity, std::int64_t c, const T* __restrict__ weight,
                            const T* __restrict__ bias, compute_t<T> eps) {
  using A = compute_t<T>;
  const std::int64_t rows = read_count(rows_ptr, capacity);
  const A count = static_cast<A>(c);
  LATTICE_GRID_LOOP(r, rows) {
    const T* xr = x + r * c;
    A mean = A{0};
    if constexpr (Layer) {
      A sum = A{0};
      for (std::int64_t j = 0; j < c; ++j) sum = add_rn(sum, load(xr[j]));
      mean = div_rn(sum, count);
    }
    A sq = A{0};
    for (std::int64_t j = 0; j < c; ++j) {
      const A d = Layer ? sub_rn(load(xr[j]), mean) : load(xr[j]);
      sq = add_rn(sq, mul_rn(d, d));
    }
    const A inv = div_rn(A{1}, sqrt_rn(add_rn(div_rn(sq, count), eps)));
    T* yr = y + r * c;
    for (std::int64_t j = 0; j < c; ++j) {
      const A w = weight != nullptr ? static_cast<A>(load(weight[j])) : A{1};
      const A d = Layer ? sub_rn(load(xr[j]), mean) : load(xr[j]);
      A v = mul_rn(mul_rn(d, inv), w);
      if constexpr (Layer) v = add_rn(v, bias != nullptr ? static_cast<A>(load(bias[j])) : A{0});
      yr[j] = store<T>(v);
    }
  }
}

template <bool Layer>
void launch_norm(const Array& x, const Array& rows, const std::optional<Array>& weight,
                 const std::optional<Array>& bias, double eps, Array& out) {
  const cudaStream_t stream = prepare(x);
  const std::int64_t capacity = x.dim(0), c = x.dim(1);
  if (capacity * c == 0) return;
  visit_float_device(x.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    norm_kernel<T, Layer><<<grid_for_active(capacity, k_threads), k_threads, 0, stream>>>(
        ptr<const T>(x), ptr<T>(out), ptr<const std::int32_t>(rows), capacity, c,
        weight ? ptr<const T>(*weight) : nullptr, bias ? ptr<const T>(*bias) : nullptr, static_cast<A>(eps));
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace

void dropout(const Array& x, const Array& rows, double p, std::uint64_t seed, Array& out) {
  const cudaStream_t stream = prepare(x);
  const std::int64_t capacity = x.dim(0), c = x.dim(1);
  if (capacity * c == 0) return;
  visit_float_device(x.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    // Rounded once on the host from the float64 value, as the CPU does.
    const A scale = static_cast<A>(1.0 / (1.0 - p));
    dropout_kernel<T><<<grid_for_active(capacity * c, k_threads), k_threads, 0, stream>>>(
        ptr<const T>(x), ptr<T>(out), ptr<const std::int32_t>(rows), capacity, c, p, seed, scale);
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

void layer_norm(const Array& x, const Array& rows, const std::optional<Array>& weight, const std::optional<Array>& bias,
                double eps, Array& out) {
  launch_norm<true>(x, rows, weight, bias, eps, out);
}

void rms_norm(const Array& x, const Array& rows, const std::optional<Array>& weight, double eps, Array& out) {
  launch_norm<false>(x, rows, weight, std::nullopt, eps, out);
}

}  // namespace lattice::cuda

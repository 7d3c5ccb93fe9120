// Device-side basics shared by the CUDA kernels: storage types, conversions,
// launch shapes and dtype dispatch. Device-only: include from .cu files.
#pragma once

#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "backend/cuda/api.hpp"
#include "backend/cuda/check.hpp"
#include "lattice/core/array.hpp"

namespace lattice::cuda::device {

// The CUDA type of each floating storage dtype, and the type it computes in.
template <class T>
struct Compute {
  using type = float;
};
template <>
struct Compute<double> {
  using type = double;
};
template <class T>
using compute_t = typename Compute<T>::type;

template <class T>
__device__ __forceinline__ compute_t<T> load(T v) {
  if constexpr (std::is_same_v<T, __half>) {
    return __half2float(v);
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(v);
  } else {
    return v;
  }
}

// Round-to-nearest-even store from the compute type.
template <class T, class V>
__device__ __forceinline__ T store(V v) {
  if constexpr (std::is_same_v<T, __half>) {
    return __float2half_rn(static_cast<float>(v));
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16_rn(static_cast<float>(v));
  } else {
    return static_cast<T>(v);
  }
}

// Reads a device-side int32 count (e.g. active rows) clamped to [0, capacity].
__device__ __forceinline__ std::int64_t read_count(const std::int32_t* count, std::int64_t capacity) {
  const std::int64_t n = *count;
  return n < 0 ? 0 : (n > capacity ? capacity : n);
}

}  // namespace lattice::cuda::device

namespace lattice::cuda {

// Blocks for `n` threads of `threads` each, capped (grid-stride loops cover the rest).
inline unsigned grid_for(std::int64_t n, int threads, std::int64_t cap = 65535LL * 32) {
  const std::int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

// Grid of a grid-stride kernel whose loop is bounded by a device-side row
// count: a capacity can exceed the active rows many times over (coarse levels
// of a network inherit the first level's capacity), and a grid sized by the
// capacity would spend most of its time starting threads that exit at once.
// 2048 blocks fill any current GPU a few times over.
inline unsigned grid_for_active(std::int64_t capacity_elements, int threads) {
  return grid_for(capacity_elements, threads, 2048);
}

inline cudaStream_t stream_of(Device device) { return static_cast<cudaStream_t>(current_stream(device.index)); }

// Calls f.template operator()<T>() with T the CUDA storage type of a float dtype.
template <class F>
decltype(auto) visit_float_device(DType t, F&& f) {
  switch (t) {
    case DType::f16:
      return f.template operator()<__half>();
    case DType::bf16:
      return f.template operator()<__nv_bfloat16>();
    case DType::f32:
      return f.template operator()<float>();
    case DType::f64:
      return f.template operator()<double>();
    default:
      break;
  }
  throw TypeError(lattice::detail::concat("[cuda] expected a floating dtype, got ", dtype_name(t)));
}

template <class T>
T* ptr(const Array& a) {
  return static_cast<T*>(a.raw());
}

}  // namespace lattice::cuda

// Grid-stride loop over [0, n).
#define LATTICE_GRID_LOOP(i, n)                                                                    \
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)

#define LATTICE_CUDA_LAUNCH_CHECK() LATTICE_CUDA_CHECK(cudaGetLastError())

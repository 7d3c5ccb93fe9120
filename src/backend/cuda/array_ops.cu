// Elementwise array operations on CUDA: fill, dtype conversion, weight repacking.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "backend/cuda/api.hpp"
#include "backend/cuda/device/common.cuh"

namespace lattice::cuda {

namespace {

constexpr int k_threads = 256;

template <class T>
__global__ void k_fill(T* out, std::int64_t n, T value) {
  LATTICE_GRID_LOOP(i, n) { out[i] = value; }
}

template <class T>
void launch_fill(const Array& out, T value) {
  const std::int64_t n = out.numel();
  if (n == 0) return;
  k_fill<<<grid_for(n, k_threads), k_threads, 0, stream_of(out.device())>>>(static_cast<T*>(out.raw()), n, value);
  LATTICE_CUDA_LAUNCH_CHECK();
}

// Conversion through double for integers and float64, through float for the 16-bit types.
template <class D, class S>
__device__ __forceinline__ D convert(S v) {
  if constexpr (std::is_same_v<S, __half> || std::is_same_v<S, __nv_bfloat16>) {
    return convert<D>(device::load(v));
  } else if constexpr (std::is_same_v<D, __half> || std::is_same_v<D, __nv_bfloat16>) {
    return device::store<D>(static_cast<float>(v));
  } else {
    return static_cast<D>(v);
  }
}

template <class D, class S>
__global__ void k_astype(const S* src, D* dst, std::int64_t n) {
  LATTICE_GRID_LOOP(i, n) { dst[i] = convert<D>(src[i]); }
}

template <class F>
decltype(auto) visit_any(DType t, F&& f) {
  switch (t) {
    case DType::i32:
      return f.template operator()<std::int32_t>();
    case DType::i64:
      return f.template operator()<std::int64_t>();
    case DType::u8:
      return f.template operator()<std::uint8_t>();
    case DType::u32:
      return f.template operator()<std::uint32_t>();
    default:
      return visit_float_device(t, std::forward<F>(f));
  }
}

// (C_out, K, C_in) -> (K, C_in, C_out); the pointwise layout is K = 1.
template <class T>
__global__ void k_kernel_major(const T* src, T* dst, std::int64_t cout, std::int64_t volume, std::int64_t cin) {
  LATTICE_GRID_LOOP(idx, cout * volume * cin) {
    const std::int64_t ci = idx % cin;
    const std::int64_t k = (idx / cin) % volume;
    const std::int64_t co = idx / (cin * volume);
    dst[(k * cin + ci) * cout + co] = src[idx];
  }
}

}  // namespace

void fill(Array& out, double value) {
  LATTICE_CUDA_CHECK(cudaSetDevice(out.device().index));
  switch (out.dtype()) {
    case DType::f16:
      launch_fill(out, __float2half_rn(static_cast<float>(value)));
      break;
    case DType::bf16:
      launch_fill(out, __float2bfloat16_rn(static_cast<float>(value)));
      break;
    case DType::f32:
      launch_fill(out, static_cast<float>(value));
      break;
    case DType::f64:
      launch_fill(out, value);
      break;
    case DType::i32:
      launch_fill(out, static_cast<std::int32_t>(value));
      break;
    case DType::i64:
      launch_fill(out, static_cast<std::int64_t>(value));
      break;
    case DType::u8:
      launch_fill(out, static_cast<std::uint8_t>(value));
      break;
    case DType::u32:
      launch_fill(out, static_cast<std::uint32_t>(value));
      break;
  }
}

void astype(const Array& src, Array& dst) {
  LATTICE_CUDA_CHECK(cudaSetDevice(src.device().index));
  const std::int64_t n = src.numel();
  if (n == 0) return;
  const cudaStream_t stream = stream_of(src.device());
  if (src.dtype() == dst.dtype()) {
    LATTICE_CUDA_CHECK(cudaMemcpyAsync(dst.raw(), src.raw(), src.nbytes(), cudaMemcpyDeviceToDevice, stream));
    return;
  }
  visit_any(src.dtype(), [&]<class S>() {
    visit_any(dst.dtype(), [&]<class D>() {
      k_astype<D, S><<<grid_for(n, k_threads), k_threads, 0, stream>>>(static_cast<const S*>(src.raw()),
                                                                       static_cast<D*>(dst.raw()), n);
      LATTICE_CUDA_LAUNCH_CHECK();
    });
  });
}

Array to_kernel_major(const Array& weight) {
  if (weight.ndim() == 3) return weight;
  const std::int64_t cout = weight.dim(0);
  const std::int64_t cin = weight.dim(weight.ndim() - 1);
  const std::int64_t volume = weight.ndim() == 5 ? weight.dim(1) * weight.dim(2) * weight.dim(3) : 1;
  Array out = Array::empty(Shape{volume, cin, cout}, weight.dtype(), weight.device());
  const std::int64_t n = weight.numel();
  if (n > 0) {
    visit_float_device(weight.dtype(), [&]<class T>() {
      k_kernel_major<T><<<grid_for(n, k_threads), k_threads, 0, stream_of(weight.device())>>>(
          static_cast<const T*>(weight.raw()), static_cast<T*>(out.raw()), cout, volume, cin);
      LATTICE_CUDA_LAUNCH_CHECK();
    });
  }
  return out;
}

}  // namespace lattice::cuda

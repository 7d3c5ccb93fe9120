// Per-channel (C,) vectors of any floating dtype read and written as float64
// (batch-norm statistics, norm parameters and their gradients): one
// definition for the forward kernels (features.cu) and the VJPs
// (features_grad.cu). Device-only: include from .cu files.
#pragma once

#include <cstdint>

#include "backend/cuda/device/common.cuh"

namespace lattice::cuda::device {

// data[j] as float64; `fallback` when data is null (an absent vector).
__device__ __forceinline__ double load_vec(const void* data, DType dtype, std::int64_t j, double fallback) {
  if (data == nullptr) return fallback;
  switch (dtype) {
    case DType::f16:
      return static_cast<double>(__half2float(static_cast<const __half*>(data)[j]));
    case DType::bf16:
      return static_cast<double>(__bfloat162float(static_cast<const __nv_bfloat16*>(data)[j]));
    case DType::f32:
      return static_cast<double>(static_cast<const float*>(data)[j]);
    default:
      return static_cast<const double*>(data)[j];
  }
}

// Float64 -> dtype the way the CPU's astype does it (16-bit via float32).
__device__ __forceinline__ void store_vec(void* data, DType dtype, std::int64_t j, double value) {
  switch (dtype) {
    case DType::f16:
      static_cast<__half*>(data)[j] = store<__half>(value);
      break;
    case DType::bf16:
      static_cast<__nv_bfloat16*>(data)[j] = store<__nv_bfloat16>(value);
      break;
    case DType::f32:
      static_cast<float*>(data)[j] = static_cast<float>(value);
      break;
    default:
      static_cast<double*>(data)[j] = value;
      break;
  }
}

}  // namespace lattice::cuda::device

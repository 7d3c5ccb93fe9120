// Array::full on CUDA: one grid-stride kernel per dtype.
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "backend/cuda/api.hpp"
#include "backend/cuda/check.hpp"

namespace lattice::cuda {

namespace {

template <class T>
__global__ void fill_kernel(T* out, std::int64_t n, T value) {
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    out[i] = value;
  }
}

template <class T>
void launch_fill(void* out, std::int64_t n, T value) {
  if (n == 0) return;
  const int threads = 256;
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>((n + threads - 1) / threads, 65535));
  fill_kernel<<<blocks, threads>>>(static_cast<T*>(out), n, value);
  LATTICE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void fill(Array& out, double value) {
  LATTICE_CUDA_CHECK(cudaSetDevice(out.device().index));
  const std::int64_t n = out.numel();
  switch (out.dtype()) {
    case DType::f16:
      launch_fill(out.raw(), n, __float2half_rn(static_cast<float>(value)));
      break;
    case DType::bf16:
      launch_fill(out.raw(), n, __float2bfloat16_rn(static_cast<float>(value)));
      break;
    case DType::f32:
      launch_fill(out.raw(), n, static_cast<float>(value));
      break;
    case DType::f64:
      launch_fill(out.raw(), n, value);
      break;
    case DType::i32:
      launch_fill(out.raw(), n, static_cast<std::int32_t>(value));
      break;
    case DType::i64:
      launch_fill(out.raw(), n, static_cast<std::int64_t>(value));
      break;
    case DType::u8:
      launch_fill(out.raw(), n, static_cast<std::uint8_t>(value));
      break;
    case DType::u32:
      launch_fill(out.raw(), n, static_cast<std::uint32_t>(value));
      break;
  }
}

}  // namespace lattice::cuda

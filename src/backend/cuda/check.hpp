// Checked CUDA runtime calls: a failure throws DeviceError naming the call,
// where it was made and the CUDA error string.
#pragma once

#include <cuda_runtime_api.h>

#include "lattice/core/error.hpp"

namespace lattice::cuda::internal {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  throw DeviceError(lattice::detail::concat("[cuda] ", call, " failed at ", file, ":", line, ": ",
                                            cudaGetErrorName(err), " (", cudaGetErrorString(err), ")"));
}

}  // namespace lattice::cuda::internal

#define LATTICE_CUDA_CHECK(call)                                                                 \
  do {                                                                                           \
    const cudaError_t lattice_cuda_err_ = (call);                                                \
    if (lattice_cuda_err_ != cudaSuccess) {                                                      \
      ::lattice::cuda::internal::throw_cuda_error(lattice_cuda_err_, #call, __FILE__, __LINE__); \
    }                                                                                            \
  } while (0)

// The fused epilogue shared by every convolution kernel (ops::ConvEpilogue):
//   v = (acc + bias) * scale + shift + residual[o];  v = relu(v)
#pragma once

#include "backend/cuda/conv_kernels.hpp"
#include "backend/cuda/device/common.cuh"

namespace lattice::cuda::device {

// `v` is the accumulator plus bias for output row o, channel col.
template <class T, class A>
__device__ __forceinline__ A epilogue(const ConvLaunch& p, A v, std::int64_t o, int col) {
  if (p.scale) v *= static_cast<A>(p.scale[col]);
  if (p.shift) v += static_cast<A>(p.shift[col]);
  if (p.residual) v += static_cast<A>(load(static_cast<const T*>(p.residual)[o * p.cout + col]));
  if (p.relu && !(v > A(0))) v = A(0);
  return v;
}

}  // namespace lattice::cuda::device

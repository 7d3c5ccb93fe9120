// The route table of the CUDA convolution: which route and tile shape a layer
// shape gets when the caller asks for `automatic`. Kept apart from the kernels.
#pragma once

#include "lattice/core/dtype.hpp"
#include "lattice/ops/conv.hpp"

namespace lattice::cuda::tuning {

// Sorted implicit GEMM whenever a kernel has more than one offset: tiles of
// rows with similar occupancy skip unused offsets. Never the host-sized
// gather-GEMM-scatter route.
inline ops::ConvRoute select_route(DType /*dtype*/, int /*cin*/, int /*cout*/, int volume) {
  return volume > 1 ? ops::ConvRoute::sorted_implicit_gemm : ops::ConvRoute::implicit_gemm;
}

// Tile configuration of the tensor-core kernel (tuning/conv_tiles.hpp).
inline int mma_config(int /*cin*/, int cout, int /*volume*/) { return cout >= 128 ? 2 : 0; }

}  // namespace lattice::cuda::tuning

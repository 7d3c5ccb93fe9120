// The route table of the CUDA convolution: which route and tile shape a layer
// shape gets when the caller asks for `automatic` and no tuned choice is
// cached. Kept apart from the kernels.
#pragma once

#include <cstdint>

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
// `rows` is the capacity, an upper bound: deep levels of a network inherit the
// first level's capacity while holding a tenth of its rows, so wide layers
// (which live deep) take the shorter tiles that give more CTAs.
inline int mma_config(int cin, int cout, std::int64_t rows) {
  if (cout == 96) return 5;
  if (cout >= 128) return 2;
  if (cin >= 64) return 4;
  return rows >= 65536 ? 1 : 0;
}

}  // namespace lattice::cuda::tuning

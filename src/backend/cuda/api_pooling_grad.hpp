// CUDA backend of the pooling / resampling / point <-> voxel VJPs (semantics:
// backend/cpu/api_pooling_grad.hpp). Plain C++ header: no CUDA types. Every
// function enqueues on the device's current stream, bounds its work by device
// counts and never waits for the host; all are gathers (no float atomics).
// Without the toolkit, backend/no_cuda/pooling_grad_stubs.cpp throws NotCompiledError.
#pragma once

#include <cstdint>
#include <optional>

#include "lattice/core/array.hpp"
#include "lattice/core/coordinates.hpp"
#include "lattice/core/relation.hpp"
#include "lattice/ops/pooling.hpp"
#include "lattice/ops/voxelize.hpp"

namespace lattice::cuda {

void pool_backward(const Relation& rel, const Array& feats, const Array& dy, ops::PoolMode mode, Array& dx);
// Batch ids >= dy.dim(0) are a sticky error naming `op`.
void global_pool_backward(const CoordinateSet& set, const Array& feats, const Array& dy, ops::PoolMode mode, Array& dx,
                          const char* op);
void trilinear_upsample_backward(const CoordinateSet& coarse, const CoordinateSet& fine, const Array& dy, Int3 ratio,
                                 Array& dx, const char* op);
void devoxelize_backward(const CoordinateSet& set, const Array& points, const Array& dy,
                         const std::optional<Array>& map, const std::optional<Array>& batch_indices,
                         const ops::DevoxelizeParams& params, Array& dx);
// voxel_rows: the device-side int32 voxel count (dy's active rows).
void voxelize_backward(const Array& inverse_rows, const Array& counts, const Array& feats, const Array& dy,
                       const Array& voxel_rows, ops::Reduction reduction, Array& dfeats);

}  // namespace lattice::cuda

// CPU backend of the pooling / resampling / point <-> voxel VJPs (SPEC §13).
// Front ends (src/ops/pooling_grad.cpp) validate every argument; these trust
// them. Every function is a gather in a fixed order (deterministic) and
// zeroes the capacity rows of its output.
#pragma once

#include <cstdint>
#include <optional>

#include "lattice/core/array.hpp"
#include "lattice/core/coordinates.hpp"
#include "lattice/core/relation.hpp"
#include "lattice/ops/pooling.hpp"
#include "lattice/ops/voxelize.hpp"

namespace lattice::cpu {

// dx (x capacity, C): dx[i] = sum over i's edges (input CSR) of dy[o] (sum),
// dy[o] / edges(o) (avg), or dy[o][c] where o's arg-max for channel c is i
// (max: the forward's rule, lowest input row on ties; an output holding a NaN
// input routes to its lowest NaN input row).
void pool_backward(const Relation& rel, const Array& feats, const Array& dy, ops::PoolMode mode, Array& dx);
// dx (capacity, C) from dy (B, C), grouping the first `rows` rows by batch column.
void global_pool_backward(const Array& coords, std::int64_t rows, const Array& feats, const Array& dy,
                          ops::PoolMode mode, Array& dx);
// dx (coarse capacity, C): the adjoint of trilinear_upsample onto `fine` (dy's rows).
void trilinear_upsample_backward(const CoordinateSet& coarse, const CoordinateSet& fine, const Array& dy, Int3 ratio,
                                 Array& dx, const char* op);
// dx (set capacity, C): the adjoint of devoxelize (same weights, recomputed).
void devoxelize_backward(const CoordinateSet& set, const Array& points, const Array& dy,
                         const std::optional<Array>& map, const std::optional<Array>& batch_indices,
                         const ops::DevoxelizeParams& params, Array& dx);
// dfeats (N, C) from dy (voxel rows): mean / sum / max (lowest point index at the max).
void voxelize_backward(const Array& inverse_rows, const Array& counts, const Array& feats, const Array& dy,
                       ops::Reduction reduction, Array& dfeats);

}  // namespace lattice::cpu

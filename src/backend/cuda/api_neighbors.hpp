// CUDA neighbour search and gather (front end: src/ops/neighbors.cpp, which has
// validated every host-known argument). Everything here enqueues on the
// device's current stream and returns without waiting; values that live on the
// device (non-finite points, batch indices out of range) are checked by the
// kernels and reported through the sticky error slot under `op`.
// No CUDA headers here: included by plain C++ translation units.
#pragma once

#include <cstdint>

#include "lattice/core/array.hpp"

namespace lattice::cuda {

// A point set on the device: rows of points (N, 3) float32 and batch (N,)
// int32 (null = all batch 0). active: device int32 scalar bounding the rows
// that take part (null = all N rows).
struct NeighborPoints {
  const Array* points = nullptr;
  const Array* batch = nullptr;
  const Array* active = nullptr;
};

// k = list length K. radius > 0 selects the radius search (keep d² <= radius2),
// radius == 0 the k-nearest search.
struct NeighborSearch {
  std::int64_t k = 1;
  double radius = 0;
  float radius2 = 0;
};

// indices (Nq, K) int32 and distances (Nq, K) float32, preallocated on the
// device; query rows beyond query.active are padding (-1 / +inf).
void neighbor_search(const NeighborPoints& query, const NeighborPoints& source, const NeighborSearch& search,
                     Array& indices, Array& distances, const char* op);

// points (capacity, 3) float32 = c + s/2 per axis; batch (capacity,) int32.
void voxel_centers(const Array& coords, const std::int32_t stride[3], Array& points, Array& batch);

// out (Nq, K, C) = feats[indices] with zeros for -1 or an index outside
// [0, feats rows).
void gather_neighbors(const Array& feats, const Array& indices, Array& out, const char* op);

}  // namespace lattice::cuda

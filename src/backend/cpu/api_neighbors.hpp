// CPU neighbour search and gather (front end: src/ops/neighbors.cpp, which has
// validated every argument; these functions rely on that).
#pragma once

#include <cstdint>

#include "lattice/core/array.hpp"

namespace lattice::cpu {

// A point set as the search sees it: the first `rows` rows of points (N, 3)
// float32 and of batch (N,) int32 (null = all batch 0) take part.
struct NeighborPoints {
  const Array* points = nullptr;
  const Array* batch = nullptr;
  std::int64_t rows = 0;
};

// k = list length K. radius > 0 selects the radius search (keep d² <= radius2),
// radius == 0 the k-nearest search.
struct NeighborSearch {
  std::int64_t k = 1;
  double radius = 0;
  float radius2 = 0;
};

// indices (Nq, K) int32 and distances (Nq, K) float32, preallocated; query
// rows at or beyond query.rows are padding (-1 / +inf).
void neighbor_search(const NeighborPoints& query, const NeighborPoints& source, const NeighborSearch& search,
                     Array& indices, Array& distances);

// points (capacity, 3) float32 = c + s/2 per axis; batch (capacity,) int32.
void voxel_centers(const Array& coords, const std::int32_t stride[3], Array& points, Array& batch);

// out (Nq, K, C) = feats[indices] with zeros for -1 (indices already checked).
void gather_neighbors(const Array& feats, const Array& indices, Array& out);

}  // namespace lattice::cpu

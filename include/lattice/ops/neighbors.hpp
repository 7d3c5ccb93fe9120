// Neighbour relations (SPEC §4 "Neighbour relations", Appendix A "Neighbours").
//
// knn_relation(query, source, k) and radius_relation(query, source, radius,
// max_neighbors) relate every query point to source points of the *same batch
// item* and return a NeighborRelation:
//   indices    (Nq, K) int32    source rows, −1 where there is no neighbour
//   distances  (Nq, K) float32  squared Euclidean distances, +inf where −1
// with K = k or max_neighbors. Each row is sorted by (distance, source row)
// ascending, so ties go to the lower source row. A query is its own neighbour
// at distance 0 when it also appears in the source.
//
// Distances are computed in float32, exactly the same way on every backend:
//   dx = s.x − q.x, dy = s.y − q.y, dz = s.z − q.z      (float32 subtractions)
//   d² = (dx·dx + dy·dy) + dz·dz                       (each product and sum
//                                                       rounded to float32, no FMA)
// radius_relation keeps sources with d² ≤ r², r² = float32(radius)·float32(radius)
// rounded to float32 (inclusive), and of those the max_neighbors nearest.
// knn_relation keeps the k nearest; rows with fewer candidates are padded.
//
// Sparse tensor inputs use voxel centres in physical coordinates, c + s/2 per
// axis (s the tensor's stride), rounded once from double to float32, and the
// batch column. Query rows at or beyond a tensor's active rows are padding
// (−1 / +inf); source rows beyond the active rows are never neighbours. So the
// relation has capacity rows for a tensor query, and gather expects capacity
// rows of features for a tensor source.
//
// Both backends search a uniform grid of cells per batch item (no all-pairs
// comparison); the grid only decides which candidates are examined, never the
// result, so CPU and CUDA return identical indices and distances.
#pragma once

#include <cstdint>
#include <optional>

#include "lattice/core/array.hpp"
#include "lattice/core/sparse_tensor.hpp"

namespace lattice::ops {

// Upper limit for k and max_neighbors: the CUDA search keeps each query's
// candidates in a fixed per-thread list of this length.
inline constexpr std::int64_t k_max_neighbors = 64;

// A batched point cloud.
struct PointSet {
  Array points;                        // (N, 3) float32, finite
  std::optional<Array> batch_indices;  // (N,) int32 in [0, 1022]; none = all in batch 0
};

struct NeighborRelation {
  Array indices;                 // (Nq, K) int32, source rows or −1
  Array distances;               // (Nq, K) float32, squared, +inf where indices is −1
  std::int64_t source_rows = 0;  // rows of the source (capacity for a tensor source)
};

// Voxel centres (c + s/2 per axis, as float32) and the batch column of x's
// rows (capacity rows; on x's device).
PointSet voxel_centers(const SparseTensor& x);

// 1 <= k <= k_max_neighbors.
NeighborRelation knn_relation(const PointSet& query, const PointSet& source, std::int64_t k);
NeighborRelation knn_relation(const SparseTensor& query, const SparseTensor& source, std::int64_t k);

// radius finite and > 0 (and float32(radius)² finite); 1 <= max_neighbors <= k_max_neighbors.
NeighborRelation radius_relation(const PointSet& query, const PointSet& source, double radius,
                                 std::int64_t max_neighbors);
NeighborRelation radius_relation(const SparseTensor& query, const SparseTensor& source, double radius,
                                 std::int64_t max_neighbors);

// (Nq, K, C) in feats' dtype: out[q, j] = feats[indices[q, j]], zeros where
// the index is −1. feats: (source_rows, C) floating, on the relation's device.
// On CUDA an index outside [0, source_rows) (only possible for a hand-built
// relation) also gives zeros; the CPU rejects it.
Array gather_neighbor_features(const Array& feats, const NeighborRelation& relation);
Array gather_neighbor_features(const SparseTensor& source, const NeighborRelation& relation);

}  // namespace lattice::ops

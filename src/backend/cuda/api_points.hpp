// CUDA backend of the points family (devoxelize.cu, batching.cu). Plain C++:
// no CUDA headers. Stubs for CPU-only builds: backend/no_cuda/points_stubs.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "lattice/core/array.hpp"
#include "lattice/core/coordinates.hpp"
#include "lattice/core/sparse_tensor.hpp"
#include "lattice/ops/batching.hpp"
#include "lattice/ops/voxelize.hpp"

namespace lattice::cuda {

// ---- devoxelize (devoxelize.cu) -----------------------------------------------
// out: (N, C) in feats' dtype. No host synchronisation. Non-finite points and
// batch indices outside [0, 1022] are recorded as sticky errors naming
// "devoxelize"; map entries outside [-1, active rows) read as absent (0).
void devoxelize(const CoordinateSet& set, const Array& feats, const Array& points, const std::optional<Array>& map,
                const std::optional<Array>& batch_indices, const ops::DevoxelizeParams& params, Array& out);
// (n,) int32 with capacity n = inverse_rows.dim(0): the lowest point of each
// voxel row; rows at and past *active_rows are -1. No host synchronisation.
Array first_points(const Array& inverse_rows, const Array& active_rows);

// ---- batching (batching.cu) ---------------------------------------------------
// Host-facing: the largest batch id among the first `rows` rows, or -1.
std::int32_t max_batch(const Array& coords, std::int64_t rows);
struct CollateResult {
  Array coords;        // (capacity, 4) int32
  Array feats;         // (capacity, C)
  Array active_rows;   // int32 scalar on the device
  Array batch_counts;  // (batch_total,) int32 on the device
};
// Concatenates the first rows[i] rows of each input (host-known counts),
// adding batch_offsets[i] to the batch column; with `mean`, merges equal
// coordinates as the CPU does (first-seen order, features averaged in row
// order). Capacity = sum of rows.
CollateResult collate(const std::vector<SparseTensor>& inputs, const std::vector<std::int64_t>& rows,
                      const std::vector<std::int32_t>& batch_offsets, std::int32_t batch_total, bool mean);
// Host-facing: row indices grouped by batch (each group in row order) as one
// device array, and the host-side group sizes. Rows with batch >= batch_size
// are a sticky error naming `op` (raised here).
std::pair<Array, std::vector<std::int64_t>> batch_rows(const Array& coords, std::int64_t rows, std::int64_t batch_size,
                                                       const char* op);
// out[i] = coords[rows[i], 1:4] (n, 3) and feats[rows[i]] (n, C); no host sync.
Array gather_xyz(const Array& coords, const Array& rows);
Array gather_feature_rows(const Array& feats, const Array& rows);

}  // namespace lattice::cuda

// CPU backend of the points family: devoxelize, quantization extras and
// batching (points_cpu.cpp, batching_cpu.cpp). Trusts the front ends' checks.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "lattice/core/array.hpp"
#include "lattice/core/coordinates.hpp"
#include "lattice/core/sparse_tensor.hpp"
#include "lattice/ops/batching.hpp"
#include "lattice/ops/voxelize.hpp"

namespace lattice::cpu {

// ---- devoxelize (points_cpu.cpp) --------------------------------------------
// out: (N, C) in feats' dtype. `map` (nearest only) replaces the hash lookup.
void devoxelize(const CoordinateSet& set, const Array& feats, const Array& points, const std::optional<Array>& map,
                const std::optional<Array>& batch_indices, const ops::DevoxelizeParams& params, Array& out);
// (m,) int32: the lowest point index of each voxel row of `inverse_rows`.
Array first_points(const Array& inverse_rows, std::int64_t m);

// ---- batching (batching_cpu.cpp) --------------------------------------------
struct CollateResult {
  Array coords;  // (rows, 4) int32
  Array feats;   // (rows, C)
  std::int64_t rows = 0;
};
// Concatenates the active rows of `inputs`, adding batch_offsets[i] to input
// i's batch column; with `mean`, merges equal coordinates (first-seen order,
// features averaged in row order).
CollateResult collate(const std::vector<SparseTensor>& inputs, const std::vector<std::int32_t>& batch_offsets,
                      bool mean);
// Largest batch id among the first `rows` coordinate rows, or -1 when none.
std::int32_t max_batch(const Array& coords, std::int64_t rows);
// Row indices grouped by batch id (b < batch_size), each group in row order.
std::vector<std::vector<std::int32_t>> batch_rows(const Array& coords, std::int64_t rows, std::int64_t batch_size);

}  // namespace lattice::cpu

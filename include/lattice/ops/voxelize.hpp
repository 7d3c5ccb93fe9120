// Points -> voxels (SPEC §8 and Appendix A "Points and voxels").
//
// Voxel coordinate per axis: c = s * floor((p - origin) / (s * voxel_size)),
// evaluated in the points' own precision with IEEE rounding (a true float32
// division for float32 points), so the CPU and CUDA produce the same voxels
// bit for bit. Voxel rows are numbered in first-seen order of the points.
#pragma once

#include <memory>
#include <optional>

#include "lattice/core/array.hpp"
#include "lattice/core/coordinates.hpp"
#include "lattice/core/sparse_tensor.hpp"

namespace lattice::ops {

// Three doubles, one per axis; a double converts to the same value on all axes.
struct Float3 {
  double x = 0, y = 0, z = 0;
  constexpr Float3() = default;
  constexpr Float3(double v) : x(v), y(v), z(v) {}  // NOLINT(google-explicit-constructor)
  constexpr Float3(double x_, double y_, double z_) : x(x_), y(y_), z(z_) {}
  constexpr double operator[](int a) const { return a == 0 ? x : (a == 1 ? y : z); }
};

enum class Reduction : std::uint8_t { mean, sum, max };

struct VoxelizeParams {
  Float3 voxel_size{0.0};  // required: finite and > 0 on every axis
  Float3 origin{0.0};
  Reduction reduction = Reduction::mean;
  Int3 stride{1};
  std::shared_ptr<CoordinateManager> manager;  // null = the default manager
};

struct Voxelized {
  SparseTensor tensor;  // one row per occupied voxel, features reduced
  Array inverse_rows;   // (N,) int32: voxel row of each point
  Array counts;         // (M,) int32: points per voxel
};

// points: (N, 3) float32 or float64. feats: (N, C) float, or none (then the
// tensor has 0 channels). batch_indices: (N,) int32 in [0, 1022], or none (all 0).
Voxelized voxelize(const Array& points, const std::optional<Array>& feats, const VoxelizeParams& params,
                   const std::optional<Array>& batch_indices = std::nullopt);

}  // namespace lattice::ops

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

namespace lattice::ops {

// ---- voxels -> points (SPEC §8, Appendix A) ---------------------------------

enum class Interpolation : std::uint8_t { linear, nearest };

struct DevoxelizeParams {
  Float3 voxel_size{0.0};  // required: the voxel_size of the voxelize that made x
  Float3 origin{0.0};      // the origin of that voxelize
  Interpolation interpolation = Interpolation::linear;
};

// Features of x at continuous points: (N, C) in x's dtype on x's device.
//
// With u = (p - origin) / (s * voxel_size) per axis (points' precision, IEEE
// division, s = x.stride()), a voxel of logical coordinate L covers [L, L + 1)
// in u and has its centre at L + 0.5.
//  - nearest: the voxel L = floor(u) (exactly voxelize's cell), or 0 if absent.
//  - linear: the 8 centres around u - 0.5; trilinear weights (float32, or
//    float64 for float64 points) renormalized over the corners present in x;
//    a point whose present corners weigh 0 in total gets 0.
// points: (N, 3) float32/float64, finite. batch_indices: (N,) int32 in
// [0, 1022] (default 0). point_voxel_map: (N,) int32 rows of x (-1 = absent),
// e.g. voxelize's inverse_rows; only with nearest, where it replaces the lookup
// (entries outside [-1, rows) are an error on the CPU; on CUDA, where the row
// count stays on the device, they read as absent). Bad device values (non-finite
// points, batch ids) are sticky errors on CUDA. No host synchronisation on CUDA.
Array devoxelize(const SparseTensor& x, const Array& points, const DevoxelizeParams& params,
                 const std::optional<Array>& point_voxel_map = std::nullopt,
                 const std::optional<Array>& batch_indices = std::nullopt);

// ---- quantization only (TorchSparse's sparse_quantize) ----------------------

struct QuantizeParams {
  Float3 voxel_size{0.0};  // required: finite and > 0 on every axis
  Float3 origin{0.0};
  Int3 stride{1};
};

// Exactly voxelize's voxels and row order, without features or a tensor.
// On CPU every array has its exact size (M rows). On CUDA the M-row arrays have
// capacity N and `active_rows` (int32 scalar on the device) holds M; rows past
// it are 0 (counts) or -1 (point_rows).
struct Quantized {
  Array coords;        // (M, 4) int32 physical (batch, x, y, z), first-seen order
  Array point_rows;    // (M,) int32: the first point of each voxel
  Array inverse_rows;  // (N,) int32: voxel row of each point
  Array counts;        // (M,) int32: points per voxel
  Array active_rows;   // int32 scalar: M
};

Quantized voxelize_with_quantization(const Array& points, const QuantizeParams& params,
                                     const std::optional<Array>& batch_indices = std::nullopt);

}  // namespace lattice::ops

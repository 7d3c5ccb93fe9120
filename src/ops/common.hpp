// Shared front-end helpers: argument checks used by several op families.
#pragma once

#include <chrono>
#include <optional>

#include "lattice/core/sparse_tensor.hpp"
#include "lattice/ops/conv.hpp"      // TargetCoords
#include "lattice/ops/features.hpp"  // BatchNormArgs
#include "lattice/ops/voxelize.hpp"

namespace lattice::ops::detail {

// x is defined, has float features of rank 2.
void check_input(const SparseTensor& x, const char* op, const char* arg = "x");
// Both tensors share one coordinate key (row-aligned), device and dtype.
void check_same_key(const SparseTensor& a, const SparseTensor& b, const char* op);
// An optional (C,) vector in `dtype` on `device`.
void check_vector(const std::optional<Array>& v, std::int64_t c, DType dtype, Device device, const char* op,
                  const char* arg);

// batch_norm's parameter checks under `op` (the forward and its VJP):
// weight / bias in x's dtype (or float32), defined running statistics of C
// entries on x's device, eps > 0.
void check_batch_norm_args(const SparseTensor& x, const BatchNormArgs& args, const char* op);

// devoxelize's argument checks under `op` (the forward and its VJP): shapes,
// dtypes, devices, geometry, and on the CPU the values (finite points, map
// entries, batch ids); on CUDA the values are checked by the forward kernel.
void check_devoxelize_args(const SparseTensor& x, const Array& points, const DevoxelizeParams& params,
                           const std::optional<Array>& point_voxel_map, const std::optional<Array>& batch_indices,
                           const char* op);

// An explicit target (tensor, key or coordinate array) as a coordinate set of
// x's manager at `stride`, checked for device and stride (resample.cpp).
std::shared_ptr<const CoordinateSet> resolve_resample_target(const SparseTensor& x, const TargetCoords& target,
                                                             Int3 stride, const char* op, const char* arg);

class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  double ms() const {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

}  // namespace lattice::ops::detail

// Vector-Jacobian products of pooling, resampling and the point <-> voxel ops
// (SPEC §13). dy is dL/dy on the forward output's coordinates (dense arrays
// where the forward returned one); each result is dL/d(input features).
// Deterministic: gathers over the relation's input-side views, fixed order,
// no floating-point atomics.
#pragma once

#include <optional>

#include "lattice/core/array.hpp"
#include "lattice/core/sparse_tensor.hpp"
#include "lattice/ops/pooling.hpp"
#include "lattice/ops/resample.hpp"
#include "lattice/ops/voxelize.hpp"

namespace lattice::ops {

// max routes each output element's gradient to its arg-max input row (ties:
// the lowest row, as the forward); avg divides by the output's edge count.
SparseTensor pool3d_backward(const SparseTensor& x, const SparseTensor& dy, PoolMode mode,
                             const Pool3dParams& params = {});
// dy: (B, C) as returned by global_pool(x, mode, B).
SparseTensor global_pool_backward(const SparseTensor& x, const Array& dy, PoolMode mode);
SparseTensor pool_transpose3d_backward(const SparseTensor& x, const SparseTensor& dy,
                                       const PoolTranspose3dParams& params = {});
// dy lives on the fine support the forward produced (params.target's key, or
// the generated children set): dy's own coordinate set is that support.
SparseTensor trilinear_upsample3d_backward(const SparseTensor& x, const SparseTensor& dy,
                                           const TrilinearUpsample3dParams& params = {});
// dy: (N, C) for the N points; result on x's key.
SparseTensor devoxelize_backward(const SparseTensor& x, const Array& points, const Array& dy,
                                 const DevoxelizeParams& params,
                                 const std::optional<Array>& point_voxel_map = std::nullopt,
                                 const std::optional<Array>& batch_indices = std::nullopt);
// y = voxelize(points, feats, ...): dL/dfeats (N, C) from dy (voxel rows of
// forward.tensor). mean divides by the voxel's count, sum copies, max routes to
// the first point (lowest index) that attained the voxel's maximum.
Array voxelize_backward(const Voxelized& forward, const Array& feats, const SparseTensor& dy, Reduction reduction);

}  // namespace lattice::ops

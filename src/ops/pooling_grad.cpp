// SCAFFOLD (issue 5, being written): every function throws until its owner replaces this file.
#include "lattice/ops/pooling_grad.hpp"

#include "lattice/core/error.hpp"

namespace lattice::ops {

SparseTensor pool3d_backward(const SparseTensor& x, const SparseTensor& dy, PoolMode mode, const Pool3dParams& params) {
  throw Error("[pool3d_backward] not implemented yet");
}

SparseTensor global_pool_backward(const SparseTensor& x, const Array& dy, PoolMode mode) {
  throw Error("[global_pool_backward] not implemented yet");
}

SparseTensor pool_transpose3d_backward(const SparseTensor& x, const SparseTensor& dy,
                                       const PoolTranspose3dParams& params) {
  throw Error("[pool_transpose3d_backward] not implemented yet");
}

SparseTensor trilinear_upsample3d_backward(const SparseTensor& x, const SparseTensor& dy,
                                           const TrilinearUpsample3dParams& params) {
  throw Error("[trilinear_upsample3d_backward] not implemented yet");
}

SparseTensor devoxelize_backward(const SparseTensor& x, const Array& points, const Array& dy,
                                 const DevoxelizeParams& params, const std::optional<Array>& point_voxel_map,
                                 const std::optional<Array>& batch_indices) {
  throw Error("[devoxelize_backward] not implemented yet");
}

Array voxelize_backward(const Voxelized& forward, const Array& feats, const SparseTensor& dy, Reduction reduction) {
  throw Error("[voxelize_backward] not implemented yet");
}

}  // namespace lattice::ops

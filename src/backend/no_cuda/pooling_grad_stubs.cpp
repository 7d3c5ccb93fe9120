// Without the CUDA toolkit the pooling VJPs' CUDA backend only throws (see
// backend/cuda/api_pooling_grad.hpp), so the front ends need no #ifdefs.
#include "backend/cuda/api_pooling_grad.hpp"
#include "backend/no_cuda/not_compiled.hpp"

namespace lattice::cuda {

using stubs::not_compiled;

void pool_backward(const Relation&, const Array&, const Array&, ops::PoolMode, Array&) {
  not_compiled("pool_backward");
}
void global_pool_backward(const CoordinateSet&, const Array&, const Array&, ops::PoolMode, Array&, const char*) {
  not_compiled("global_pool_backward");
}
void trilinear_upsample_backward(const CoordinateSet&, const CoordinateSet&, const Array&, Int3, Array&, const char*) {
  not_compiled("trilinear_upsample_backward");
}
void devoxelize_backward(const CoordinateSet&, const Array&, const Array&, const std::optional<Array>&,
                         const std::optional<Array>&, const ops::DevoxelizeParams&, Array&) {
  not_compiled("devoxelize_backward");
}
void voxelize_backward(const Array&, const Array&, const Array&, const Array&, const Array&, ops::Reduction, Array&) {
  not_compiled("voxelize_backward");
}

}  // namespace lattice::cuda

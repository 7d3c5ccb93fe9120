// Built instead of src/backend/cuda/neighbors.cu when LATTICE_CUDA is OFF: every
// entry of backend/cuda/api_neighbors.hpp reports that CUDA is not compiled in.
#include "backend/cuda/api_neighbors.hpp"
#include "backend/no_cuda/not_compiled.hpp"

namespace lattice::cuda {

using stubs::not_compiled;

void neighbor_search(const NeighborPoints&, const NeighborPoints&, const NeighborSearch&, Array&, Array&,
                     const char* op) {
  not_compiled(op);
}
void voxel_centers(const Array&, const std::int32_t*, Array&, Array&) { not_compiled("voxel_centers"); }
void gather_neighbors(const Array&, const Array&, Array&, const char*) { not_compiled("gather_neighbor_features"); }

}  // namespace lattice::cuda

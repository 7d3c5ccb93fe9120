// Built instead of the CUDA points family when LATTICE_CUDA is OFF: every entry
// of backend/cuda/api_points.hpp reports that CUDA is not compiled in.
#include "backend/cuda/api_points.hpp"
#include "backend/no_cuda/not_compiled.hpp"

namespace lattice::cuda {

using stubs::not_compiled;

void devoxelize(const CoordinateSet&, const Array&, const Array&, const std::optional<Array>&,
                const std::optional<Array>&, const ops::DevoxelizeParams&, Array&) {
  not_compiled("devoxelize");
}
Array first_points(const Array&, const Array&) { not_compiled("voxelize_with_quantization"); }
std::int32_t max_batch(const Array&, std::int64_t) { not_compiled("max_batch"); }
CollateResult collate(const std::vector<SparseTensor>&, const std::vector<std::int64_t>&,
                      const std::vector<std::int32_t>&, std::int32_t, bool) {
  not_compiled("sparse_collate");
}
std::pair<Array, std::vector<std::int64_t>> batch_rows(const Array&, std::int64_t, std::int64_t, const char* op) {
  not_compiled(op);
}
Array gather_xyz(const Array&, const Array&) { not_compiled("decomposed_coordinates"); }
Array gather_feature_rows(const Array&, const Array&) { not_compiled("decomposed_features"); }

}  // namespace lattice::cuda

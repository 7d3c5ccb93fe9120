// Without the CUDA toolkit the resample family's CUDA backend only throws (see
// backend/cuda/api_resample.hpp), so its front ends need no #ifdefs.
#include "backend/cuda/api_resample.hpp"
#include "backend/no_cuda/not_compiled.hpp"

namespace lattice::cuda {

using stubs::not_compiled;

void square_weight(const Array&, Array&) { not_compiled("square_weight"); }
void normalized_combine(const Array&, const Array&, const std::optional<Array>&, double, const Array&, Array&) {
  not_compiled("normalized_combine");
}
ChildrenSupport upsample_children(const CoordinateSet&, Int3, Int3, const char*) { not_compiled("upsample_children"); }
void trilinear_upsample(const CoordinateSet&, const Array&, const CoordinateSet&, Int3, Array&, const char*) {
  not_compiled("trilinear_upsample");
}
void dropout(const Array&, const Array&, double, std::uint64_t, Array&) { not_compiled("dropout"); }
void layer_norm(const Array&, const Array&, const std::optional<Array>&, const std::optional<Array>&, double, Array&) {
  not_compiled("layer_norm");
}
void rms_norm(const Array&, const Array&, const std::optional<Array>&, double, Array&) { not_compiled("rms_norm"); }

}  // namespace lattice::cuda

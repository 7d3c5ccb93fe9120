// Without the CUDA toolkit the sets backend only throws (see
// backend/cuda/api_sets.hpp), so src/ops/algebra.cpp and coordinate_sets.cpp need no #ifdefs.
#include "backend/cuda/api_sets.hpp"
#include "backend/no_cuda/not_compiled.hpp"

namespace lattice::cuda {

using stubs::not_compiled;

AlignParts align(const CoordinateSet&, const CoordinateSet&, ops::Join, const char*) { not_compiled("align"); }
void binary_rows(const Array&, const Array&, const std::optional<Array>&, const std::optional<Array>&, const Array&,
                 ops::BinaryOp, double, double, Array&) {
  not_compiled("binary_rows");
}
void gather_rows(const Array&, const Array&, const Array&, double, Array&, const char*) { not_compiled("gather_rows"); }
void permute_rows(const Array&, const Array&, Array&) { not_compiled("permute_rows"); }
Array identity_rows(const CoordinateSet&) { not_compiled("identity_rows"); }
Array match_rows(const CoordinateSet&, const CoordinateSet&, const char*) { not_compiled("match_rows"); }
Array lookup(const CoordinateSet&, const Array&, const char*) { not_compiled("lookup"); }
Array contains(const CoordinateSet&, const Array&, const char*) { not_compiled("contains"); }
SetParts downsample(const CoordinateSet&, Int3, const char*) { not_compiled("downsample"); }
Array morton_codes(const Array&, const std::optional<Array>&, Int3, const char*) { not_compiled("morton_codes"); }
Array morton_order(const Array&) { not_compiled("morton_order"); }

}  // namespace lattice::cuda

// Without the CUDA toolkit the row-selection backend only throws (see
// backend/cuda/api_rows.hpp), so src/ops/rows.cpp needs no #ifdefs.
#include "backend/cuda/api_rows.hpp"
#include "backend/no_cuda/not_compiled.hpp"

namespace lattice::cuda {

using stubs::not_compiled;

RowSubset prune_rows(const CoordinateSet&, const Array&, const Array&, const char*) { not_compiled("prune_rows"); }
RowSubset mask_rows(const CoordinateSet&, const Array&, const Array&, bool, const char*) { not_compiled("mask_rows"); }
RowSubset crop_rows(const CoordinateSet&, const Array&, Int3, Int3) { not_compiled("crop_rows"); }
RowSubset topk_rows(const CoordinateSet&, const Array&, const Array&, double, const char*) {
  not_compiled("topk_rows");
}

}  // namespace lattice::cuda

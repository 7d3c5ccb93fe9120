// Without the CUDA toolkit weight quantization's CUDA backend only throws (see
// backend/quantize_kernels.hpp), so the front end needs no #ifdefs.
#include "backend/no_cuda/not_compiled.hpp"
#include "backend/quantize_kernels.hpp"

namespace lattice::cuda {

using stubs::not_compiled;

void quantize_weight(const Array&, const quant::Geometry&, Array&, Array&, Array&, Array&) {
  not_compiled("quantize_weight");
}
void dequantize_weight(const Array&, const Array&, const Array&, const quant::Geometry&, Array&) {
  not_compiled("dequantize_weight");
}

}  // namespace lattice::cuda

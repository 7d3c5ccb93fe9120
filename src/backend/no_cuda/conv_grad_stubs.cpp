// Stand-ins for src/backend/cuda/conv_grad.cu in builds without CUDA.
#include "backend/cuda/api.hpp"
#include "backend/no_cuda/not_compiled.hpp"

namespace lattice::cuda {

using stubs::not_compiled;

void conv_input_grad(const Relation&, const Array&, const Array&, const Array&, Array&) {
  not_compiled("conv_input_grad");
}
void conv_weight_grad(const Relation&, const Array&, const Array&, Array&) { not_compiled("conv_weight_grad"); }
void pointwise_input_grad(const Array&, const Array&, const Array&, Array&) { not_compiled("pointwise_input_grad"); }
void pointwise_weight_grad(const Array&, const Array&, const Array&, Array&) { not_compiled("pointwise_weight_grad"); }
void bias_grad(const Array&, const Array&, Array&) { not_compiled("bias_grad"); }
void normalized_grad_terms(const Array&, const Array&, const Array&, double, const Array&, Array&, Array&) {
  not_compiled("normalized_grad_terms");
}
void normalized_weight_combine(const Array&, const Array&, const Array&, Array&) {
  not_compiled("normalized_weight_combine");
}
Array from_kernel_major(const Array&, const Shape&) { not_compiled("from_kernel_major"); }

}  // namespace lattice::cuda

// Stand-ins for src/backend/cuda/features_grad.cu in builds without CUDA.
#include "backend/cuda/api_features_grad.hpp"
#include "backend/no_cuda/not_compiled.hpp"

namespace lattice::cuda {

using stubs::not_compiled;

void activation_backward(const Array&, const Array&, const Array&, const ops::ActivationParams&, Array&) {
  not_compiled("activation_backward");
}
void binary_backward_rows(const Array&, const Array&, const Array&, const Array&, ops::BinaryOp, Array&, Array&) {
  not_compiled("sparse_binary_backward");
}
void split_channels(const Array&, const Array&, Array&, Array&) { not_compiled("cat_backward"); }
void row_norm_backward(const Array&, const Array&, const Array&, const std::optional<Array>&, double, bool, Array&,
                       Array*, Array*) {
  not_compiled("row_norm_backward");
}
void batch_norm_backward(const Array&, const Array&, const Array&, const ops::BatchNormArgs&, Array&, Array*, Array*) {
  not_compiled("batch_norm_backward");
}

}  // namespace lattice::cuda

// Without the CUDA toolkit the training backend only throws (see
// backend/cuda/api_train.hpp), so src/nn/optim.cpp and loss.cpp need no #ifdefs.
#include "backend/cuda/api_train.hpp"
#include "backend/no_cuda/not_compiled.hpp"

namespace lattice::cuda {

using stubs::not_compiled;

void sgd_update(const Array&, const Array&, const Array&, const lattice::detail::SgdUpdate&) {
  not_compiled("SGD.step");
}
void adamw_update(const Array&, const Array&, const Array&, const Array&, const lattice::detail::AdamWUpdate&) {
  not_compiled("AdamW.step");
}
Array cross_entropy(const Array&, const Array&, const Array&, const nn::CrossEntropyParams&, const char*) {
  not_compiled("cross_entropy");
}
Array cross_entropy_backward(const Array&, const Array&, const Array&, const nn::CrossEntropyParams&, const Array&,
                             const char*) {
  not_compiled("cross_entropy_backward");
}
Array confusion_matrix(const Array&, const Array&, std::int64_t, std::int64_t, const char*) {
  not_compiled("confusion_matrix");
}

}  // namespace lattice::cuda

// SCAFFOLD (issue 5, being written): every function throws until its owner replaces this file.
#include "lattice/ops/features_grad.hpp"

#include "lattice/core/error.hpp"

namespace lattice::ops {

SparseTensor activation_backward(const SparseTensor& x, const SparseTensor& dy, const ActivationParams& params) {
  throw Error("[activation_backward] not implemented yet");
}

SparseTensor dropout_backward(const SparseTensor& dy, const DropoutParams& params) {
  throw Error("[dropout_backward] not implemented yet");
}

NormGrads batch_norm_backward(const SparseTensor& x, const SparseTensor& dy, const BatchNormArgs& args) {
  throw Error("[batch_norm_backward] not implemented yet");
}

NormGrads layer_norm_backward(const SparseTensor& x, const SparseTensor& dy, const LayerNormArgs& args) {
  throw Error("[layer_norm_backward] not implemented yet");
}

NormGrads rms_norm_backward(const SparseTensor& x, const SparseTensor& dy, const RmsNormArgs& args) {
  throw Error("[rms_norm_backward] not implemented yet");
}

std::pair<SparseTensor, SparseTensor> cat_backward(const SparseTensor& a, const SparseTensor& b,
                                                   const SparseTensor& dy) {
  throw Error("[cat_backward] not implemented yet");
}

BinaryGrads sparse_binary_backward(BinaryOp op, const SparseTensor& lhs, const SparseTensor& rhs,
                                   const SparseTensor& dy, const BinaryParams& params) {
  throw Error("[sparse_binary_backward] not implemented yet");
}

SparseTensor row_subset_backward(const SparseTensor& x, const SparseTensor& dy) {
  throw Error("[row_subset_backward] not implemented yet");
}

}  // namespace lattice::ops

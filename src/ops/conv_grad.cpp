// SCAFFOLD (issue 5, being written): every function throws until its owner replaces this file.
#include "lattice/ops/conv_grad.hpp"

#include "lattice/core/error.hpp"

namespace lattice::ops {

ConvGrads conv3d_backward(const SparseTensor& x, const Array& weight, const SparseTensor& dy,
                          const Conv3dParams& params, const GradRequest& need) {
  throw Error("[conv3d_backward] not implemented yet");
}

ConvGrads subm_conv3d_backward(const SparseTensor& x, const Array& weight, const SparseTensor& dy,
                               const SubmConv3dParams& params, const GradRequest& need) {
  throw Error("[subm_conv3d_backward] not implemented yet");
}

ConvGrads conv_transpose3d_backward(const SparseTensor& x, const Array& weight, const SparseTensor& dy,
                                    const ConvTranspose3dParams& params, const GradRequest& need) {
  throw Error("[conv_transpose3d_backward] not implemented yet");
}

ConvGrads generative_conv_transpose3d_backward(const SparseTensor& x, const Array& weight, const SparseTensor& dy,
                                               const GenerativeConvTranspose3dParams& params, const GradRequest& need) {
  throw Error("[generative_conv_transpose3d_backward] not implemented yet");
}

ConvGrads normalized_subm_conv3d_backward(const SparseTensor& x, const Array& weight, const SparseTensor& dy,
                                          const NormalizedSubmConv3dParams& params, const GradRequest& need) {
  throw Error("[normalized_subm_conv3d_backward] not implemented yet");
}

ConvGrads normalized_conv_transpose3d_backward(const SparseTensor& x, const Array& weight, const SparseTensor& dy,
                                               const NormalizedConvTranspose3dParams& params, const GradRequest& need) {
  throw Error("[normalized_conv_transpose3d_backward] not implemented yet");
}

ConvGrads normalized_generative_conv_transpose3d_backward(const SparseTensor& x, const Array& weight,
                                                          const SparseTensor& dy,
                                                          const NormalizedGenerativeConvTranspose3dParams& params,
                                                          const GradRequest& need) {
  throw Error("[normalized_generative_conv_transpose3d_backward] not implemented yet");
}

ConvGrads linear_backward(const SparseTensor& x, const Array& weight, const SparseTensor& dy, const GradRequest& need) {
  throw Error("[linear_backward] not implemented yet");
}

}  // namespace lattice::ops

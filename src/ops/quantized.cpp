// Quantized-weight front ends: check, dequantize into the features' dtype on
// their device, run the float op (see lattice/ops/quantized.hpp for why).
#include "lattice/ops/quantized.hpp"

#include "lattice/ops/features.hpp"
#include "ops/common.hpp"

namespace lattice::ops {

namespace {

// The float weight for `op`, after the checks that a dequantized weight would
// no longer allow (its recorded kernel and layout); the float op checks the rest.
Array dequantized_for(const SparseTensor& x, const QuantizedWeight& q, Int3 kernel_size, const char* op) {
  detail::check_input(x, op);
  check<DeviceError>(q.device() == x.device(), op, "weight", "quantized weight is on ", q.device().str(),
                     " but the features are on ", x.device().str());
  check(q.in_channels() == x.channels(), op, "weight", "quantized weight has C_in = ", q.in_channels(),
        " but the input has ", x.channels(), " channels");
  if (q.is_spatial()) {
    check(q.kernel_size() == kernel_size, op, "weight", "quantized weight has kernel_size ", q.kernel_size().str(),
          " but the op's kernel_size is ", kernel_size.str());
  } else {
    check(kernel_size == Int3{1}, op, "weight",
          "a linear-layout quantized weight (C_out, C_in) needs a 1x1x1 kernel, but kernel_size is ",
          kernel_size.str());
  }
  return dequantize_weight(q, x.dtype());
}

}  // namespace

SparseTensor conv3d(const SparseTensor& x, const QuantizedWeight& weight, const std::optional<Array>& bias,
                    const Conv3dParams& params) {
  return conv3d(x, dequantized_for(x, weight, params.kernel_size, "conv3d"), bias, params);
}

SparseTensor subm_conv3d(const SparseTensor& x, const QuantizedWeight& weight, const std::optional<Array>& bias,
                         const SubmConv3dParams& params) {
  return subm_conv3d(x, dequantized_for(x, weight, params.kernel_size, "subm_conv3d"), bias, params);
}

SparseTensor conv_transpose3d(const SparseTensor& x, const QuantizedWeight& weight, const std::optional<Array>& bias,
                              const ConvTranspose3dParams& params) {
  return conv_transpose3d(x, dequantized_for(x, weight, params.kernel_size, "conv_transpose3d"), bias, params);
}

SparseTensor generative_conv_transpose3d(const SparseTensor& x, const QuantizedWeight& weight,
                                         const std::optional<Array>& bias,
                                         const GenerativeConvTranspose3dParams& params) {
  return generative_conv_transpose3d(x, dequantized_for(x, weight, params.kernel_size, "generative_conv_transpose3d"),
                                     bias, params);
}

SparseTensor normalized_subm_conv3d(const SparseTensor& x, const QuantizedWeight& weight,
                                    const std::optional<Array>& bias, const NormalizedSubmConv3dParams& params) {
  return normalized_subm_conv3d(x, dequantized_for(x, weight, params.kernel_size, "normalized_subm_conv3d"), bias,
                                params);
}

SparseTensor normalized_conv_transpose3d(const SparseTensor& x, const QuantizedWeight& weight,
                                         const std::optional<Array>& bias,
                                         const NormalizedConvTranspose3dParams& params) {
  return normalized_conv_transpose3d(x, dequantized_for(x, weight, params.kernel_size, "normalized_conv_transpose3d"),
                                     bias, params);
}

SparseTensor normalized_generative_conv_transpose3d(const SparseTensor& x, const QuantizedWeight& weight,
                                                    const std::optional<Array>& bias,
                                                    const NormalizedGenerativeConvTranspose3dParams& params) {
  return normalized_generative_conv_transpose3d(
      x, dequantized_for(x, weight, params.kernel_size, "normalized_generative_conv_transpose3d"), bias, params);
}

SparseTensor linear(const SparseTensor& x, const QuantizedWeight& weight, const std::optional<Array>& bias) {
  constexpr const char* op = "linear";
  check(weight.kernel_volume() == 1, op, "weight", "quantized weight has kernel_size ", weight.kernel_size().str(),
        "; linear needs a (C_out, C_in) weight or a 1x1x1 kernel");
  const Array w = dequantized_for(x, weight, Int3{1}, op);
  detail::check_vector(bias, weight.out_channels(), x.dtype(), x.device(), op, "bias");  // before a conv3d names it
  if (weight.layout() == WeightLayout::kernel_major) {
    // (1, C_in, C_out) is the transpose of linear's (C_out, C_in): the pointwise
    // convolution is the same product on the same identity.
    return conv3d(x, w, bias, Conv3dParams{.kernel_size = Int3{1}});
  }
  return linear(x, w.reshape(Shape{weight.out_channels(), weight.in_channels()}), bias);
}

}  // namespace lattice::ops

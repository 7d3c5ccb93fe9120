// Convolutions and linear on quantized weights (SPEC §9).
//
// Every convolution kind and `linear` accept a QuantizedWeight in place of a
// floating weight. The route is dequantize-then-GEMM: the weight is
// dequantized per call into a temporary in the features' dtype on their
// device, and the ordinary op runs on it. Weights are small next to the
// features they multiply (K * C_in * C_out elements against N * C_in), so the
// extra pass is cheap, and every route, dtype and backend of the float ops is
// reused unchanged -- including their float32 accumulation, which is what
// "quantized ops accumulate in float32" asks. The result equals the same op on
// dequantize_weight(q, x.dtype()) exactly. Fused int4/int8 kernels (codes
// unpacked in registers inside the implicit GEMM) are future work.
//
// Checks, naming the op and argument 'weight' (before any work): q on x's
// device (DeviceError); q.in_channels() == x.channels(); for spatial layouts
// q.kernel_size() == params.kernel_size; the linear layout only where the op
// takes a pointwise weight (1x1x1 conv3d / subm_conv3d, linear); `linear`
// takes the linear layout or a spatial one with a 1x1x1 kernel.
#pragma once

#include <optional>

#include "lattice/core/quantized_weight.hpp"
#include "lattice/core/sparse_tensor.hpp"
#include "lattice/ops/conv.hpp"

namespace lattice::ops {

SparseTensor conv3d(const SparseTensor& x, const QuantizedWeight& weight,
                    const std::optional<Array>& bias = std::nullopt, const Conv3dParams& params = {});
SparseTensor subm_conv3d(const SparseTensor& x, const QuantizedWeight& weight,
                         const std::optional<Array>& bias = std::nullopt, const SubmConv3dParams& params = {});
SparseTensor conv_transpose3d(const SparseTensor& x, const QuantizedWeight& weight,
                              const std::optional<Array>& bias = std::nullopt,
                              const ConvTranspose3dParams& params = {});
SparseTensor generative_conv_transpose3d(const SparseTensor& x, const QuantizedWeight& weight,
                                         const std::optional<Array>& bias = std::nullopt,
                                         const GenerativeConvTranspose3dParams& params = {});

SparseTensor normalized_subm_conv3d(const SparseTensor& x, const QuantizedWeight& weight,
                                    const std::optional<Array>& bias = std::nullopt,
                                    const NormalizedSubmConv3dParams& params = {});
SparseTensor normalized_conv_transpose3d(const SparseTensor& x, const QuantizedWeight& weight,
                                         const std::optional<Array>& bias = std::nullopt,
                                         const NormalizedConvTranspose3dParams& params = {});
SparseTensor normalized_generative_conv_transpose3d(const SparseTensor& x, const QuantizedWeight& weight,
                                                    const std::optional<Array>& bias = std::nullopt,
                                                    const NormalizedGenerativeConvTranspose3dParams& params = {});

// y = x W^T + b with W = dequantize_weight(weight) as (C_out, C_in).
SparseTensor linear(const SparseTensor& x, const QuantizedWeight& weight,
                    const std::optional<Array>& bias = std::nullopt);

}  // namespace lattice::ops

// Vector-Jacobian products of the convolutions (SPEC §13): for y = conv(x, W, b)
// and an upstream gradient dy = dL/dy on y's coordinates (same key as y):
//   dL/dx[i] = sum over edges (i, o, k) of dy[o] * W[k]^T   (the transposed relation)
//   dL/dW[k] = sum over edges (i, o, k) of x[i]^T * dy[o]   (per-offset X^T dY)
//   dL/db    = sum over y's active rows of dy
// The relation is the forward's (looked up in x's manager, so normally cached).
// dy must live on the forward output's key (ValueError otherwise); with an
// explicit target, a tensor/key target must name dy's key and an array target
// is taken to be dy's support (it is not registered again). A forward relation
// evicted from the cache is rebuilt; if that issues a new output key, dy is
// accepted when its coordinates match the rebuilt output row by row (a
// host-facing check, only after an eviction).
// The normalized forms recompute N and D with the forward ops (no TF32).
// Weight gradients come back in the layout the weight was given in. Accumulation
// is float32 for float16/bfloat16 (float64 for float64), in a fixed order, with
// no floating-point atomics: results are bitwise identical run to run.
// params.epilogue must be empty (a fused epilogue has no VJP; train unfused).
#pragma once

#include <optional>

#include "lattice/core/array.hpp"
#include "lattice/core/sparse_tensor.hpp"
#include "lattice/ops/conv.hpp"

namespace lattice::ops {

// Which gradients to compute (skipping one saves its kernels).
struct GradRequest {
  bool input = true;
  bool weight = true;
  bool bias = true;
};

struct ConvGrads {
  std::optional<SparseTensor> input;  // dL/dx on x's key (x's capacity), when requested
  std::optional<Array> weight;        // dL/dW, same shape and layout as the weight given
  std::optional<Array> bias;          // (C_out,) in the feature dtype
};

ConvGrads conv3d_backward(const SparseTensor& x, const Array& weight, const SparseTensor& dy,
                          const Conv3dParams& params = {}, const GradRequest& need = {});
ConvGrads subm_conv3d_backward(const SparseTensor& x, const Array& weight, const SparseTensor& dy,
                               const SubmConv3dParams& params = {}, const GradRequest& need = {});
ConvGrads conv_transpose3d_backward(const SparseTensor& x, const Array& weight, const SparseTensor& dy,
                                    const ConvTranspose3dParams& params = {}, const GradRequest& need = {});
ConvGrads generative_conv_transpose3d_backward(const SparseTensor& x, const Array& weight, const SparseTensor& dy,
                                               const GenerativeConvTranspose3dParams& params = {},
                                               const GradRequest& need = {});
// Normalized forms: Y = conv(X, W) / sqrt(conv(1, W^2) + eps) + b; the weight
// gradient includes the path through the denominator.
ConvGrads normalized_subm_conv3d_backward(const SparseTensor& x, const Array& weight, const SparseTensor& dy,
                                          const NormalizedSubmConv3dParams& params = {}, const GradRequest& need = {});
ConvGrads normalized_conv_transpose3d_backward(const SparseTensor& x, const Array& weight, const SparseTensor& dy,
                                               const NormalizedConvTranspose3dParams& params = {},
                                               const GradRequest& need = {});
ConvGrads normalized_generative_conv_transpose3d_backward(const SparseTensor& x, const Array& weight,
                                                          const SparseTensor& dy,
                                                          const NormalizedGenerativeConvTranspose3dParams& params = {},
                                                          const GradRequest& need = {});
// linear(x, W (C_out, C_in), b): dy on x's key.
ConvGrads linear_backward(const SparseTensor& x, const Array& weight, const SparseTensor& dy,
                          const GradRequest& need = {});

}  // namespace lattice::ops

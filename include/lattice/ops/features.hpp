// Feature operations that keep the coordinate identity (SPEC §7), and the
// same-key algebra the networks of this release need. All of them work on the
// active rows only and never modify their inputs.
#pragma once

#include <optional>
#include <utility>

#include "lattice/core/array.hpp"
#include "lattice/core/sparse_tensor.hpp"

namespace lattice::ops {

enum class ActivationKind : std::uint8_t { relu, leaky_relu, gelu, gelu_tanh, silu, sigmoid, tanh, softplus };

struct ActivationParams {
  ActivationKind kind = ActivationKind::relu;
  double negative_slope = 0.01;  // leaky_relu
};

SparseTensor activation(const SparseTensor& x, const ActivationParams& params);
SparseTensor relu(const SparseTensor& x);

// Batch normalisation over the active rows (SPEC Appendix A "Feature ops").
// training: normalise with the batch statistics (biased variance) and return
// running statistics updated with momentum and the unbiased variance;
// otherwise normalise with the given running statistics (returned unchanged).
struct BatchNormArgs {
  std::optional<Array> weight;  // (C,) gamma, default 1
  std::optional<Array> bias;    // (C,) beta, default 0
  Array running_mean;           // (C,) float32
  Array running_var;            // (C,) float32
  bool training = false;
  double momentum = 0.1;
  double eps = 1e-5;
};

struct BatchNormResult {
  SparseTensor output;
  Array running_mean;  // updated copies when training; the inputs otherwise
  Array running_var;
};

BatchNormResult batch_norm(const SparseTensor& x, const BatchNormArgs& args);

// Inference batch norm as a per-channel affine map y = x * scale + shift,
// from the running statistics (scale = weight / sqrt(running_var + eps),
// shift = bias - running_mean * scale): (C,) float32 each, on the statistics'
// device -- the form ConvEpilogue takes. Host-facing (it reads the statistics).
std::pair<Array, Array> batch_norm_fold(const BatchNormArgs& args);

// Row-wise sum of two tensors with the same coordinate key.
SparseTensor add(const SparseTensor& a, const SparseTensor& b);
// Channel concatenation [a, b] of two tensors with the same coordinate key.
SparseTensor cat(const SparseTensor& a, const SparseTensor& b);

}  // namespace lattice::ops

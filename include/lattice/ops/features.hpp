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
  // batch_norm_backward in training mode: the forward's saved_stats for this
  // x. CUDA then skips recomputing the batch statistics (the same values,
  // bitwise); the CPU recomputes them either way.
  std::optional<Array> saved_stats{};
};

struct BatchNormResult {
  SparseTensor output;
  Array running_mean;  // updated copies when training; the inputs otherwise
  Array running_var;
  // Training on CUDA: (2, C) float64, the batch mean and 1 / sqrt(var + eps)
  // (biased variance), for batch_norm_backward. Undefined otherwise.
  Array saved_stats;
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

// ---- named feature ops (SPEC §7, Appendix A "Feature ops") --------------------
// All keep x's coordinate identity and work on the active rows only.
namespace lattice::ops {

// y = x W^T + b with weight (C_out, C_in) and bias (C_out,) in the feature
// dtype (the pointwise convolution route; float32 accumulation for 16-bit).
SparseTensor linear(const SparseTensor& x, const Array& weight, const std::optional<Array>& bias = std::nullopt);

SparseTensor leaky_relu(const SparseTensor& x, double negative_slope = 0.01);
SparseTensor gelu(const SparseTensor& x, bool approximate = false);  // approximate: the tanh form
SparseTensor silu(const SparseTensor& x);
SparseTensor sigmoid(const SparseTensor& x);
SparseTensor tanh(const SparseTensor& x);
SparseTensor softplus(const SparseTensor& x);  // beta 1, threshold 20

// Inverted dropout: element (row, channel) is kept when u >= p, where u in
// [0, 1) is the top 53 bits of a counter-based hash of (seed, row, channel)
// (see dropout_keep_value in the backends), and kept elements are multiplied
// by 1 / (1 - p) (rounded once to the compute type). The mask depends only on
// (seed, row, channel): CPU and CUDA drop the same elements. Identity (a copy)
// when !training or p == 0. p must lie in [0, 1).
struct DropoutParams {
  double p = 0.5;
  std::uint64_t seed = 0;
  bool training = true;
};
SparseTensor dropout(const SparseTensor& x, const DropoutParams& params = {});

// Normalisation over the channels of each active row (two passes: mean, then
// the biased variance of the deviations), float32 accumulation for 16-bit and
// float32 features, float64 for float64; channels summed in index order.
//   layer_norm: y = (x - mean) / sqrt(var + eps) * weight + bias
//   rms_norm:   y = x / sqrt(mean(x^2) + eps) * weight
// weight, bias: optional (C,) in the feature dtype (default 1 and 0).
struct LayerNormArgs {
  std::optional<Array> weight;
  std::optional<Array> bias;
  double eps = 1e-5;
};
SparseTensor layer_norm(const SparseTensor& x, const LayerNormArgs& args = {});

struct RmsNormArgs {
  std::optional<Array> weight;
  double eps = 1e-5;
};
SparseTensor rms_norm(const SparseTensor& x, const RmsNormArgs& args = {});

}  // namespace lattice::ops

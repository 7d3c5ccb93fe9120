// Vector-Jacobian products of the feature ops, sparse algebra and row
// selection (SPEC §13). dy is dL/dy on the forward output's coordinates; every
// result is a gradient on the named input's key (its capacity), 0 on rows the
// output did not use. Deterministic (fixed reduction order, no float atomics).
#pragma once

#include <optional>
#include <utility>

#include "lattice/core/array.hpp"
#include "lattice/core/sparse_tensor.hpp"
#include "lattice/ops/algebra.hpp"
#include "lattice/ops/features.hpp"

namespace lattice::ops {

// y = activation(x): dL/dx.
SparseTensor activation_backward(const SparseTensor& x, const SparseTensor& dy, const ActivationParams& params);
// y = dropout(x, params): the forward's mask (same seed), scaled by 1/(1-p); identity when !training or p == 0.
SparseTensor dropout_backward(const SparseTensor& dy, const DropoutParams& params);

struct NormGrads {
  SparseTensor input;           // dL/dx
  std::optional<Array> weight;  // (C,) when the forward had a weight
  std::optional<Array> bias;    // (C,) when the forward had a bias
};
// args as given to the forward: training uses the batch statistics over the
// active rows (and their gradient), inference the running statistics.
NormGrads batch_norm_backward(const SparseTensor& x, const SparseTensor& dy, const BatchNormArgs& args);
NormGrads layer_norm_backward(const SparseTensor& x, const SparseTensor& dy, const LayerNormArgs& args = {});
NormGrads rms_norm_backward(const SparseTensor& x, const SparseTensor& dy, const RmsNormArgs& args = {});

// y = cat(a, b): the channel split of dy.
std::pair<SparseTensor, SparseTensor> cat_backward(const SparseTensor& a, const SparseTensor& b,
                                                   const SparseTensor& dy);

struct BinaryGrads {
  SparseTensor lhs;  // on lhs's key
  SparseTensor rhs;  // on rhs's key
};
// y = sparse_binary(op, lhs, rhs, params). Fill values are constants (no
// gradient). maximum/minimum route the gradient to the side that was taken
// (ties: lhs).
BinaryGrads sparse_binary_backward(BinaryOp op, const SparseTensor& lhs, const SparseTensor& rhs,
                                   const SparseTensor& dy, const BinaryParams& params = {});

// Row subsets and reorderings (prune, prune_mask, crop, topk_rows,
// morton_sort_coords): dy's rows scattered back to the rows of x with the same
// coordinates, 0 elsewhere.
SparseTensor row_subset_backward(const SparseTensor& x, const SparseTensor& dy);

}  // namespace lattice::ops

// CPU backend of the training kernels (src/nn/optim.cpp, src/nn/loss.cpp):
// optimizer updates, cross-entropy and confusion counts. Arguments are
// validated by the front ends; these only compute (they are also the
// reference for backend/cuda/train.cu, which follows the same operation order).
#pragma once

#include <cstdint>

#include "lattice/core/array.hpp"
#include "lattice/nn/loss.hpp"
#include "lattice/nn/optim.hpp"

namespace lattice::cpu {

// value and grad share shape and float dtype; momentum (float32 for 16-bit
// values, else the value dtype) is undefined when update.momentum == 0.
void sgd_update(const Array& value, const Array& grad, const Array& momentum, const lattice::detail::SgdUpdate& update);
void adamw_update(const Array& value, const Array& grad, const Array& exp_avg, const Array& exp_avg_sq,
                  const lattice::detail::AdamWUpdate& update);

// logits (capacity, C) float; count: int32 scalar (active rows) or undefined
// for all rows; labels (capacity,) int32 already checked. Scalar loss, float32
// (float64 for float64 logits).
Array cross_entropy(const Array& logits, const Array& count, const Array& labels, const nn::CrossEntropyParams& params);
// grad_loss: float scalar or undefined (1). Rows past count are 0.
Array cross_entropy_backward(const Array& logits, const Array& count, const Array& labels,
                             const nn::CrossEntropyParams& params, const Array& grad_loss);

// pred (N,) int32/int64 or (N, C) float; labels (N,) int32; values checked by the front end.
Array confusion_matrix(const Array& pred, const Array& labels, std::int64_t num_classes, std::int64_t ignore_index);

}  // namespace lattice::cpu

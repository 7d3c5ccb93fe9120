// CPU backend of the feature-op VJPs (features_grad_cpu.cpp). The front end
// (src/ops/features_grad.cpp) validates every argument; these functions trust
// it. Each works on rows [0, rows) and zeroes the capacity rows of its outputs.
// Per-column (weight / bias) sums are float64 over a fixed number of row
// chunks added in chunk order, so they do not depend on the thread count.
#pragma once

#include <cstdint>
#include <optional>

#include "lattice/core/array.hpp"
#include "lattice/ops/algebra.hpp"
#include "lattice/ops/features.hpp"

namespace lattice::cpu {

// dx = dy * activation'(x), element by element.
void activation_backward(const Array& x, const Array& dy, std::int64_t rows, const ops::ActivationParams& params,
                         Array& dx);

// Row-aligned VJP of out = op(a, b): ga = dL/da, gb = dL/db (a, b, dy, ga, gb
// all (capacity, C) in one dtype). maximum/minimum: the side that was taken
// gets dy (ties and a NaN lhs: lhs), the other 0.
void binary_backward_rows(const Array& a, const Array& b, const Array& dy, std::int64_t rows, ops::BinaryOp op,
                          Array& ga, Array& gb);

// The channel split of dy (capacity, Ca + Cb) into a (capacity, Ca) and b (capacity, Cb).
void split_channels(const Array& dy, std::int64_t rows, Array& a, Array& b);

// layer_norm (center = true) and rms_norm (center = false) backward. dweight /
// dbias: (C,) in the feature dtype, or null when not wanted.
void row_norm_backward(const Array& x, const Array& dy, std::int64_t rows, const std::optional<Array>& weight,
                       double eps, bool center, Array& dx, Array* dweight, Array* dbias);

// batch_norm backward (training: batch statistics; otherwise running ones).
// dweight / dbias: (C,) in the dtype of the forward's weight / bias, or null.
void batch_norm_backward(const Array& x, const Array& dy, std::int64_t rows, const ops::BatchNormArgs& args, Array& dx,
                         Array* dweight, Array* dbias);

}  // namespace lattice::cpu

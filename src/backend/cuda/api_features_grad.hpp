// CUDA backend of the feature-op VJPs (features_grad.cu). Plain C++ (no CUDA
// headers). The front end (src/ops/features_grad.cpp) validates every argument
// and allocates the outputs zeroed; kernels read the active row count `rows`
// (int32 scalar) on the device and write rows [0, *rows) only. Nothing waits
// for the host. Per-column sums use device/reduce.cuh (fixed order, float64).
#pragma once

#include <cstdint>
#include <optional>

#include "lattice/core/array.hpp"
#include "lattice/ops/algebra.hpp"
#include "lattice/ops/features.hpp"

namespace lattice::cuda {

// dx = dy * activation'(x), element by element.
void activation_backward(const Array& x, const Array& dy, const Array& rows, const ops::ActivationParams& params,
                         Array& dx);

// Row-aligned VJP of out = op(a, b): ga = dL/da, gb = dL/db (a, b, dy, ga, gb
// all (capacity, C) in one dtype). maximum/minimum: the side that was taken
// gets dy (ties and a NaN lhs: lhs), the other 0.
void binary_backward_rows(const Array& a, const Array& b, const Array& dy, const Array& rows, ops::BinaryOp op,
                          Array& ga, Array& gb);

// The channel split of dy (capacity, Ca + Cb) into a (capacity, Ca) and b (capacity, Cb).
void split_channels(const Array& dy, const Array& rows, Array& a, Array& b);

// layer_norm (center = true) and rms_norm (center = false) backward. dweight /
// dbias: (C,) in the feature dtype, or null when not wanted.
void row_norm_backward(const Array& x, const Array& dy, const Array& rows, const std::optional<Array>& weight,
                       double eps, bool center, Array& dx, Array* dweight, Array* dbias);

// batch_norm backward (training: batch statistics; otherwise running ones).
// dweight / dbias: (C,) in the dtype of the forward's weight / bias, or null.
void batch_norm_backward(const Array& x, const Array& dy, const Array& rows, const ops::BatchNormArgs& args, Array& dx,
                         Array* dweight, Array* dbias);

}  // namespace lattice::cuda

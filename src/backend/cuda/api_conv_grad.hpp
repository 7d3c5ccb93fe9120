// CUDA backend of the convolution VJPs (conv_grad.cu). Included from api.hpp.
// Same contracts as the CPU functions in backend/cpu/api_conv_grad.hpp, with
// row counts as device int32 scalars (no host reads). Every kernel is a
// gather with a fixed summation order: no atomics, bitwise reproducible.
#pragma once

#include "lattice/core/array.hpp"
#include "lattice/core/relation.hpp"

namespace lattice::cuda {

// in_count: int32 device scalar, the input set's active rows.
void conv_input_grad(const Relation& rel, const Array& dy, const Array& weight_km, const Array& in_count, Array& dx);
void conv_weight_grad(const Relation& rel, const Array& x, const Array& dy, Array& dw);
// `rows`: int32 device scalar, the active row count (identity relation).
void pointwise_input_grad(const Array& dy, const Array& rows, const Array& weight_km, Array& dx);
void pointwise_weight_grad(const Array& x, const Array& dy, const Array& rows, Array& dw);
void bias_grad(const Array& dy, const Array& rows, Array& db);
void normalized_grad_terms(const Array& dy, const Array& num, const Array& den, double eps, const Array& rows, Array& g,
                           Array& dden);
void normalized_weight_combine(const Array& dw_num, const Array& dw_den, const Array& weight_km, Array& out);
Array from_kernel_major(const Array& km, const Shape& shape);

}  // namespace lattice::cuda

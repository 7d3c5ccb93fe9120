// CPU backend of the convolution VJPs (conv_grad_cpu.cpp). Included from api.hpp.
// Kernel-major weights are (K, C_in, C_out). "acc" is float32 for 16-bit and
// float32 features, float64 for float64. Every sum runs in a fixed order.
#pragma once

#include <cstdint>

#include "lattice/core/array.hpp"
#include "lattice/core/relation.hpp"

namespace lattice::cpu {

// dx[i] = sum over i's edges of dy[o] * W[k]^T, per offset k ascending (gather, GEMM, add).
// dx: (input capacity, C_in) in dy's dtype; rows without edges are zero.
void conv_input_grad(const Relation& rel, const Array& dy, const Array& weight_km, Array& dx);
// dw[k] = sum over k's edges of x[i]^T dy[o]; dw: (K, C_in, C_out) in the acc
// dtype of x/dy (x and dy share a dtype). Per offset: gather + one BLAS GEMM.
void conv_weight_grad(const Relation& rel, const Array& x, const Array& dy, Array& dw);
// The identity relation over rows [0, rows) (pointwise / linear).
void pointwise_input_grad(const Array& dy, std::int64_t rows, const Array& weight_km, Array& dx);
void pointwise_weight_grad(const Array& x, const Array& dy, std::int64_t rows, Array& dw);
// db[c] = sum over rows [0, rows) of dy[r, c], accumulated in acc, stored in db's dtype.
void bias_grad(const Array& dy, std::int64_t rows, Array& db);
// Normalized forms, per element of rows [0, rows) (zero past them), s = sqrt(den + eps):
//   g = dy / s (dy's dtype),  dden = -1/2 * dy * num / s^3 (den's acc dtype).
void normalized_grad_terms(const Array& dy, const Array& num, const Array& den, double eps, std::int64_t rows, Array& g,
                           Array& dden);
// out[k, ci, co] = dw_num[k, ci, co] + 2 W[k, ci, co] * dw_den[k, 0, co] (all acc dtype but W).
void normalized_weight_combine(const Array& dw_num, const Array& dw_den, const Array& weight_km, Array& out);
// Inverse of to_kernel_major: (K, C_in, C_out) into `shape` (dense 5-D, kernel-major or pointwise).
Array from_kernel_major(const Array& km, const Shape& shape);

}  // namespace lattice::cpu

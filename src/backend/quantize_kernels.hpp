// Backend entry points of weight quantization (core/quantized_weight.cpp is
// the front end). Plain C++: no CUDA types. The CPU versions live in
// backend/cpu/quantize_cpu.cpp, the CUDA ones in backend/cuda/quantize.cu
// (backend/no_cuda/quantize_stubs.cpp without the toolkit). Both backends
// evaluate the same float32 expressions with explicit rounding, so their
// results are bitwise identical.
#pragma once

#include <cstdint>

#include "lattice/core/array.hpp"

namespace lattice::quant {

// Where the float weight of group row r = k * cout + co, input channel ci
// lives: element k * stride_k + co * stride_co + ci * stride_ci of the
// contiguous floating array (the same formula for quantize's input and
// dequantize's output). Arguments are validated by the front end.
struct Geometry {
  std::int64_t volume = 1;      // K
  std::int64_t cout = 0;        // C_out
  std::int64_t cin = 0;         // real C_in
  std::int64_t cin_padded = 0;  // C_in rounded up to group_size
  int group_size = 32;
  int bits = 8;
  std::int64_t stride_k = 0, stride_co = 0, stride_ci = 0;

  constexpr std::int64_t rows() const { return volume * cout; }
  constexpr std::int64_t words() const { return cin_padded * bits / 32; }    // per row
  constexpr std::int64_t groups() const { return cin_padded / group_size; }  // per row
};

}  // namespace lattice::quant

namespace lattice::cpu {
// weight: float32/float16 in the layout of `g`; codes (rows, W) uint32,
// scales/biases (rows, G) in weight's dtype. Throws ValueError naming
// "quantize_weight" on a non-finite weight value.
void quantize_weight(const Array& weight, const quant::Geometry& g, Array& codes, Array& scales, Array& biases);
// out: any floating dtype, in the layout of `g`.
void dequantize_weight(const Array& codes, const Array& scales, const Array& biases, const quant::Geometry& g,
                       Array& out);
}  // namespace lattice::cpu

namespace lattice::cuda {
// As the CPU versions; `nonfinite` is a device int32 scalar (zero on entry)
// set to 1 when a weight value is not finite. Enqueued on the current stream.
void quantize_weight(const Array& weight, const quant::Geometry& g, Array& codes, Array& scales, Array& biases,
                     Array& nonfinite);
void dequantize_weight(const Array& codes, const Array& scales, const Array& biases, const quant::Geometry& g,
                       Array& out);
}  // namespace lattice::cuda

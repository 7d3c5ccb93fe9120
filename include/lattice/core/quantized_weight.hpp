// Packed affine groupwise weight quantization (SPEC §9 and Appendix A
// "Quantization").
//
// A floating weight w is quantized along C_in in groups of g consecutive input
// channels: for one group row (kernel offset k, output channel co)
//
//   lo, hi = min, max of the group's real (unpadded) channels, in float32
//   scale  = max((hi - lo) / (2^b - 1), 1e-7)        bias = lo
//   code   = clamp(round_half_even((w - bias) / scale), 0, 2^b - 1)
//   w'     = scale * code + bias                     (dequantized)
//
// scale and bias are stored in the quantized weight's dtype (float32 or
// float16); the codes are computed against the *stored* values (rounded to
// that dtype and read back as float32), so that `w'` reproduces what the codes
// meant. C_in is zero-padded to a multiple of g; padded channels are excluded
// from the statistics and get code 0. Codes pack low bits first into uint32
// words: input channel j of a row goes to word j*b/32 at bit (j*b) mod 32
// (8 int4 or 4 int8 codes per word).
//
// Storage (W = padded C_in * b / 32 words, G = padded C_in / g groups):
//   linear                  weight (C_out, W) uint32,    scales/biases (C_out, G)
//   kernel_major, dense_5d  weight (K, C_out, W) uint32, scales/biases (K, C_out, G)
// The layout records the shape the weight was quantized from, so that
// dequantize_weight gives back that shape: (C_out, C_in), kernel-major
// (K, C_in, C_out) or dense (C_out, Kx, Ky, Kz, C_in).
//
// All arithmetic is float32 with explicit IEEE rounding (no FMA contraction);
// the CPU and CUDA backends produce bitwise-identical codes, scales, biases and
// dequantized weights.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "lattice/core/array.hpp"
#include "lattice/core/kernel_spec.hpp"

namespace lattice {

// The shape a QuantizedWeight was quantized from (and dequantizes back to).
enum class WeightLayout : std::uint8_t {
  linear,        // (C_out, C_in); kernel_size is (1, 1, 1)
  kernel_major,  // (K, C_in, C_out)
  dense_5d,      // (C_out, Kx, Ky, Kz, C_in)
};
std::string_view layout_name(WeightLayout layout);  // "linear", "kernel_major", "dense_5d"
// Parses a layout name; ValueError naming `op` and `arg` otherwise.
WeightLayout parse_weight_layout(std::string_view name, std::string_view op = "QuantizedWeight",
                                 std::string_view arg = "layout");

// Packed codes plus per-group scales and biases. Immutable once made; copies
// share the arrays. Invariants (checked by the constructor, errors naming
// "QuantizedWeight" and the argument): bits in {4, 8}, group_size in
// {32, 64, 128}; in/out channels >= 1; weight uint32 and scales/biases float32
// or float16 (same dtype) with the shapes above; all three on one device;
// kernel_size >= 1 on every axis, (1, 1, 1) for the linear layout.
class QuantizedWeight {
 public:
  QuantizedWeight(Array weight, Array scales, Array biases, int group_size, int bits, int in_channels, int out_channels,
                  Int3 kernel_size, WeightLayout layout);

  const Array& weight() const { return weight_; }  // packed uint32 codes
  const Array& scales() const { return scales_; }
  const Array& biases() const { return biases_; }
  int group_size() const { return group_size_; }
  int bits() const { return bits_; }
  int in_channels() const { return in_channels_; }    // real C_in (unpadded)
  int out_channels() const { return out_channels_; }  // C_out
  Int3 kernel_size() const { return kernel_size_; }
  WeightLayout layout() const { return layout_; }

  DType dtype() const { return scales_.dtype(); }  // of scales and biases: float32 or float16
  Device device() const { return weight_.device(); }
  int kernel_volume() const { return static_cast<int>(kernel_size_.product()); }  // K
  int padded_in_channels() const;  // C_in rounded up to a multiple of group_size
  int words_per_row() const;       // W
  int groups_per_row() const;      // G
  bool is_spatial() const { return layout_ != WeightLayout::linear; }

  // Deep copy onto `device` (itself when already there).
  QuantizedWeight to(Device device) const;

 private:
  Array weight_, scales_, biases_;
  int group_size_, bits_, in_channels_, out_channels_;
  Int3 kernel_size_;
  WeightLayout layout_;
};

struct QuantizeParams {
  // 4 or 8. The SPEC names no default; 8 keeps a network's accuracy without
  // re-tuning (int4 usually needs calibration), so 8 is the default.
  int bits = 8;
  // 32, 64 or 128; unset: 64 when C_in >= 64, else 32 (SPEC Appendix A).
  std::optional<int> group_size{};
  // Kernel-major weights (K, C_in, C_out): the kernel size, whose volume must
  // be K. Unset: the cube root of K when K is a cube (27 -> 3x3x3, 8 ->
  // 2x2x2, 1 -> 1x1x1), else an error asking for it. Dense 5-D weights carry
  // their own size (a given one must agree); linear weights take none (or 1).
  std::optional<Int3> kernel_size{};
};

// Quantizes a float32 or float16 weight: linear (C_out, C_in), kernel-major
// (K, C_in, C_out) or dense (C_out, Kx, Ky, Kz, C_in), on the CPU or CUDA
// (result on the weight's device; bitwise equal across backends). Errors:
// TypeError for other dtypes, ValueError for other ranks, empty dimensions,
// bits/group_size outside {4,8}x{32,64,128}, a kernel size that does not fit,
// and non-finite weight values (on CUDA a host-facing call: it waits for the
// device to report them). The input is not modified.
QuantizedWeight quantize_weight(const Array& weight, const QuantizeParams& params = {});

// The floating weight the codes stand for, in the layout it was quantized from
// ((C_out, C_in), (K, C_in, C_out) or (C_out, Kx, Ky, Kz, C_in)), on q's
// device, in q.dtype() -- or in `dtype` (any floating dtype) when given.
// scale * code + bias is evaluated in float32 whatever the result dtype and
// rounded once to it (widened exactly for float64), so every result dtype
// holds the same values up to its own rounding.
Array dequantize_weight(const QuantizedWeight& q, std::optional<DType> dtype = std::nullopt);

}  // namespace lattice

// CPU backend of the resample family: normalized convolutions' combine step,
// trilinear upsampling, dropout and per-row norms. Front ends (src/ops/
// normalized_conv.cpp, resample.cpp, norms.cpp) validate every argument first;
// these functions rely on that. Each works on rows [0, rows) and zeroes the
// capacity rows of its output.
#pragma once

#include <cstdint>
#include <optional>

#include "lattice/core/array.hpp"
#include "lattice/core/coordinates.hpp"

namespace lattice::detail {

// Dropout's counter-based generator, shared by the CPU and CUDA backends (the
// CUDA build compiles constexpr functions for the device): SplitMix64's
// finaliser chained over (seed, row, channel). An element is kept when the
// top 53 bits of the hash, as a double in [0, 1), are >= p -- exact integer
// and double arithmetic, so both backends draw the same mask.
constexpr std::uint64_t dropout_mix(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
constexpr bool dropout_keep(std::uint64_t seed, std::uint64_t row, std::uint64_t channel, double p) {
  const std::uint64_t h = dropout_mix(dropout_mix(dropout_mix(seed) ^ row) ^ channel);
  return static_cast<double>(h >> 11) * 0x1.0p-53 >= p;
}

}  // namespace lattice::detail

namespace lattice::cpu {

// ---- normalized convolutions (resample_cpu.cpp) --------------------------------
// out = w * w elementwise, any shape; out is float32 (float64 when w is).
void square_weight(const Array& w, Array& out);
// out[o, c] = num[o, c] / sqrt(den[o, c] + eps) + bias[c] for o < rows.
// num: feature dtype; den: float32 or float64; out: feature dtype.
void normalized_combine(const Array& num, const Array& den, const std::optional<Array>& bias, double eps,
                        std::int64_t rows, Array& out);

// ---- trilinear upsampling (resample_cpu.cpp) -----------------------------------
// The children support of `coarse`: (rows * r^3, 4) physical coordinates at
// fine_stride, rows outer, children inner (z fastest). Throws ValueError
// naming `op` when a child's logical coordinate leaves the key range.
Array upsample_children(const CoordinateSet& coarse, Int3 ratio, Int3 fine_stride, const char* op);
// out (fine capacity, C): the Appendix A interpolation of `feats` (coarse rows)
// at every active fine row.
void trilinear_upsample(const CoordinateSet& coarse, const Array& feats, const CoordinateSet& fine, Int3 ratio,
                        Array& out, const char* op);

// ---- dropout and norms (norms_cpu.cpp) -------------------------------------------
void dropout(const Array& x, std::int64_t rows, double p, std::uint64_t seed, Array& out);
void layer_norm(const Array& x, std::int64_t rows, const std::optional<Array>& weight, const std::optional<Array>& bias,
                double eps, Array& out);
void rms_norm(const Array& x, std::int64_t rows, const std::optional<Array>& weight, double eps, Array& out);

}  // namespace lattice::cpu

// Packed 64-bit coordinate keys, shared by the CPU and CUDA hash tables.
//
//   bits 54..63  batch        (10 bits, 0 .. 1022; 1023 is reserved)
//   bits 36..53  x + 2^17     (18 bits)
//   bits 18..35  y + 2^17
//   bits  0..17  z + 2^17
// Keys are built from *logical* coordinates (physical / stride), so any
// stride reaches +-2^17 lattice steps. The all-ones key (batch 1023) marks an
// empty hash slot, which is why batch 1023 is not a valid batch index.
// Header-only and usable from .cu files.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define LATTICE_HD __host__ __device__ __forceinline__
#else
#define LATTICE_HD inline
#endif

namespace lattice::detail {

inline constexpr int k_axis_bits = 18;
inline constexpr std::int32_t k_axis_min = -(1 << 17);
inline constexpr std::int32_t k_axis_max = (1 << 17) - 1;
inline constexpr std::int32_t k_batch_max = 1022;
inline constexpr std::uint64_t k_empty_key = ~std::uint64_t{0};

LATTICE_HD constexpr bool axis_fits(std::int64_t v) { return v >= k_axis_min && v <= k_axis_max; }

LATTICE_HD constexpr bool key_fits(std::int64_t b, std::int64_t x, std::int64_t y, std::int64_t z) {
  return b >= 0 && b <= k_batch_max && axis_fits(x) && axis_fits(y) && axis_fits(z);
}

// Requires key_fits(b, x, y, z).
LATTICE_HD constexpr std::uint64_t pack_key(std::int32_t b, std::int32_t x, std::int32_t y, std::int32_t z) {
  constexpr std::uint64_t bias = std::uint64_t{1} << 17;
  return (static_cast<std::uint64_t>(b) << 54) | ((static_cast<std::uint64_t>(x) + bias) << 36) |
         ((static_cast<std::uint64_t>(y) + bias) << 18) | (static_cast<std::uint64_t>(z) + bias);
}

// 64-bit finalizer (MurmurHash3 fmix64): spreads nearby keys over the table.
LATTICE_HD constexpr std::uint64_t hash_key(std::uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

// Floor division for a positive divisor (rounds toward -inf for negative a).
LATTICE_HD constexpr std::int32_t floor_div(std::int32_t a, std::int32_t b) {
  const std::int32_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

}  // namespace lattice::detail

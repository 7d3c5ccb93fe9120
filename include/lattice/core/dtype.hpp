// Element types and the 16-bit float storage types used on the host.
//
// float16/bfloat16 are storage formats: kernels load them, compute in float32
// and round back with round-to-nearest-even. The host types below are plain
// bit containers with exact conversions, so that the CPU and CUDA agree on
// every rounding decision.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace lattice {

enum class DType : std::uint8_t { f16, bf16, f32, f64, i32, i64, u8, u32 };

constexpr std::size_t itemsize(DType t) {
  switch (t) {
    case DType::f16:
    case DType::bf16:
      return 2;
    case DType::f32:
    case DType::i32:
    case DType::u32:
      return 4;
    case DType::f64:
    case DType::i64:
      return 8;
    case DType::u8:
      return 1;
  }
  return 0;
}

constexpr bool is_floating(DType t) {
  return t == DType::f16 || t == DType::bf16 || t == DType::f32 || t == DType::f64;
}

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f16:
      return "float16";
    case DType::bf16:
      return "bfloat16";
    case DType::f32:
      return "float32";
    case DType::f64:
      return "float64";
    case DType::i32:
      return "int32";
    case DType::i64:
      return "int64";
    case DType::u8:
      return "uint8";
    case DType::u32:
      return "uint32";
  }
  return "?";
}

// IEEE 754 binary16 storage.
struct half {
  std::uint16_t bits = 0;
};

// bfloat16 storage: the top 16 bits of a float32.
struct bfloat16 {
  std::uint16_t bits = 0;
};

constexpr float half_to_float(half h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h.bits & 0x8000u) << 16;
  std::uint32_t exp = (h.bits >> 10) & 0x1fu;
  std::uint32_t man = h.bits & 0x3ffu;
  std::uint32_t out = 0;
  if (exp == 0x1f) {  // inf / nan
    out = sign | 0x7f800000u | (man << 13);
  } else if (exp != 0) {  // normal
    out = sign | ((exp + 112u) << 23) | (man << 13);
  } else if (man != 0) {  // subnormal: renormalise
    int e = -1;
    do {
      ++e;
      man <<= 1;
    } while ((man & 0x400u) == 0);
    out = sign | (static_cast<std::uint32_t>(112 - e) << 23) | ((man & 0x3ffu) << 13);
  } else {
    out = sign;
  }
  return std::bit_cast<float>(out);
}

// Round to nearest even, overflow to inf, NaN stays NaN.
constexpr half float_to_half(float f) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) {  // inf or nan
    return half{static_cast<std::uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u))};
  }
  if (absx >= 0x477ff000u) {  // rounds to >= 65520: overflow
    return half{static_cast<std::uint16_t>(sign | 0x7c00u)};
  }
  if (absx < 0x38800000u) {                     // below the smallest normal half: subnormal or zero
    if (absx < 0x33000000u) return half{sign};  // < 2^-25 rounds to 0
    const std::uint32_t e = absx >> 23;
    const std::uint32_t m = (absx & 0x7fffffu) | 0x800000u;
    const std::uint32_t shift = 126u - e;  // 14 + (113 - e) - 1
    std::uint32_t r = m >> shift;
    const std::uint32_t rem = m & ((1u << shift) - 1u);
    const std::uint32_t halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (r & 1u))) ++r;
    return half{static_cast<std::uint16_t>(sign | r)};
  }
  std::uint32_t r = ((absx >> 23) - 112u) << 10 | ((absx >> 13) & 0x3ffu);
  const std::uint32_t rem = absx & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return half{static_cast<std::uint16_t>(sign | r)};
}

constexpr float bfloat16_to_float(bfloat16 b) { return std::bit_cast<float>(static_cast<std::uint32_t>(b.bits) << 16); }

constexpr bfloat16 float_to_bfloat16(float f) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return bfloat16{static_cast<std::uint16_t>((x >> 16) | 0x40u)};
  const std::uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
  return bfloat16{static_cast<std::uint16_t>((x + rounding) >> 16)};
}

// Maps a C++ element type to its DType.
template <class T>
struct dtype_of;
template <>
struct dtype_of<half> {
  static constexpr DType value = DType::f16;
};
template <>
struct dtype_of<bfloat16> {
  static constexpr DType value = DType::bf16;
};
template <>
struct dtype_of<float> {
  static constexpr DType value = DType::f32;
};
template <>
struct dtype_of<double> {
  static constexpr DType value = DType::f64;
};
template <>
struct dtype_of<std::int32_t> {
  static constexpr DType value = DType::i32;
};
template <>
struct dtype_of<std::int64_t> {
  static constexpr DType value = DType::i64;
};
template <>
struct dtype_of<std::uint8_t> {
  static constexpr DType value = DType::u8;
};
template <>
struct dtype_of<std::uint32_t> {
  static constexpr DType value = DType::u32;
};
template <class T>
inline constexpr DType dtype_of_v = dtype_of<T>::value;

// Float conversions for the storage types (identity for float/double).
inline float to_float(half h) { return half_to_float(h); }
inline float to_float(bfloat16 b) { return bfloat16_to_float(b); }
inline float to_float(float f) { return f; }
inline double to_float(double d) { return d; }

template <class T>
T from_float(float f);
template <>
inline half from_float<half>(float f) {
  return float_to_half(f);
}
template <>
inline bfloat16 from_float<bfloat16>(float f) {
  return float_to_bfloat16(f);
}
template <>
inline float from_float<float>(float f) {
  return f;
}
template <>
inline double from_float<double>(float f) {
  return f;
}

}  // namespace lattice

// float16 / bfloat16 conversions: exhaustive over every 16-bit pattern and
// against the compiler's own _Float16 / hardware rounding where available.
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include <gtest/gtest.h>

#include "lattice/core/dtype.hpp"

namespace lattice {
namespace {

TEST(Half, EveryBitPatternRoundTrips) {
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const half h{static_cast<std::uint16_t>(b)};
    const float f = half_to_float(h);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(half_to_float(float_to_half(f)))) << b;
      continue;
    }
    EXPECT_EQ(float_to_half(f).bits, h.bits) << "pattern " << b;
  }
}

TEST(Half, MatchesCompilerFloat16OnRandomFloats) {
#if defined(__FLT16_MAX__)
  std::mt19937 rng(1);
  std::uniform_int_distribution<std::uint32_t> bits;
  for (int i = 0; i < 2'000'000; ++i) {
    std::uint32_t u = bits(rng);
    // Concentrate on the half range: exponents near 0 (2^-30 .. 2^17).
    u = (u & 0x807fffffu) | ((97u + (u >> 23) % 48u) << 23);
    const float f = std::bit_cast<float>(u);
    const _Float16 ref = static_cast<_Float16>(f);
    std::uint16_t ref_bits = 0;
    std::memcpy(&ref_bits, &ref, 2);
    ASSERT_EQ(float_to_half(f).bits, ref_bits) << "float " << f;
    ASSERT_EQ(half_to_float(half{ref_bits}), static_cast<float>(ref));
  }
#else
  GTEST_SKIP() << "compiler has no _Float16";
#endif
}

TEST(Half, Specials) {
  EXPECT_EQ(float_to_half(65504.0f).bits, 0x7bffu);
  EXPECT_EQ(float_to_half(65520.0f).bits, 0x7c00u);  // rounds to inf
  EXPECT_EQ(float_to_half(-std::numeric_limits<float>::infinity()).bits, 0xfc00u);
  EXPECT_EQ(float_to_half(5.9604645e-08f).bits, 0x0001u);  // smallest subnormal
  EXPECT_EQ(float_to_half(2.9802322e-08f).bits, 0x0000u);  // exactly half of it: ties to even (0)
  EXPECT_EQ(float_to_half(-0.0f).bits, 0x8000u);
  EXPECT_TRUE(std::isnan(half_to_float(float_to_half(std::nanf("")))));
}

TEST(BFloat16, RoundsToNearestEven) {
  EXPECT_EQ(float_to_bfloat16(1.0f).bits, 0x3f80u);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
  EXPECT_EQ(float_to_bfloat16(1.00390625f).bits, 0x3f80u);
  EXPECT_EQ(float_to_bfloat16(1.01171875f).bits, 0x3f82u);  // 1 + 3*2^-8 -> up to even
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const bfloat16 v{static_cast<std::uint16_t>(b)};
    const float f = bfloat16_to_float(v);
    if (!std::isnan(f)) EXPECT_EQ(float_to_bfloat16(f).bits, v.bits);
  }
  EXPECT_TRUE(std::isnan(bfloat16_to_float(float_to_bfloat16(std::nanf("")))));
}

TEST(DType, Properties) {
  EXPECT_EQ(itemsize(DType::f16), 2u);
  EXPECT_EQ(itemsize(DType::i64), 8u);
  EXPECT_TRUE(is_floating(DType::bf16));
  EXPECT_FALSE(is_floating(DType::i32));
  EXPECT_EQ(dtype_name(DType::u32), "uint32");
}

}  // namespace
}  // namespace lattice

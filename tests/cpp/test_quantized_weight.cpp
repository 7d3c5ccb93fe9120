// Weight quantization (SPEC §9, Appendix A "Quantization"): quantize_weight
// against a scalar reference of the SPEC formulas written here (statistics and
// codes in float32 as the SPEC says, packing by the SPEC's bit rule), for all
// three layouts x bits {4, 8} x group sizes {32, 64, 128} x float32/float16,
// with C_in both a multiple of the group and not; hand-built packing, ties
// and padding cases; constant groups; the error paths; and every convolution
// kind plus linear on a QuantizedWeight against the same op on
// dequantize_weight(q).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "lattice/core/quantized_weight.hpp"
#include "lattice/ops/conv.hpp"
#include "lattice/ops/features.hpp"
#include "lattice/ops/quantized.hpp"
#include "support/expect_error.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

// ---- the reference ------------------------------------------------------------------

float round_to(float v, DType dtype) { return dtype == DType::f16 ? half_to_float(float_to_half(v)) : v; }

struct RefQuant {
  std::vector<std::uint32_t> words;   // (rows, W)
  std::vector<float> scales, biases;  // (rows, G), values as stored
  std::vector<double> dequantized;    // in the input layout
  std::vector<std::uint32_t> codes;   // (rows, padded C_in), unpacked
};

// Element index of (k, co, ci) in each float layout (SPEC §5 layouts).
std::size_t index_of(WeightLayout layout, int volume, int cin, int cout, int k, int co, int ci) {
  switch (layout) {
    case WeightLayout::linear:
      return static_cast<std::size_t>(co * cin + ci);
    case WeightLayout::kernel_major:
      return static_cast<std::size_t>((k * cin + ci) * cout + co);
    case WeightLayout::dense_5d:
      break;
  }
  return static_cast<std::size_t>((co * volume + k) * cin + ci);
}

RefQuant reference(const std::vector<double>& w, WeightLayout layout, int volume, int cin, int cout, int bits,
                   int group, DType dtype) {
  const int padded = (cin + group - 1) / group * group;
  const int words = padded * bits / 32, groups = padded / group;
  const float levels = static_cast<float>((1 << bits) - 1);
  RefQuant r;
  r.words.assign(static_cast<std::size_t>(volume * cout * words), 0u);
  r.codes.assign(static_cast<std::size_t>(volume * cout * padded), 0u);
  r.scales.resize(static_cast<std::size_t>(volume * cout * groups));
  r.biases.resize(r.scales.size());
  r.dequantized.resize(w.size());
  for (int k = 0; k < volume; ++k) {
    for (int co = 0; co < cout; ++co) {
      const int row = k * cout + co;
      for (int gi = 0; gi < groups; ++gi) {
        float lo = std::numeric_limits<float>::max(), hi = -lo;
        for (int ci = gi * group; ci < std::min(cin, (gi + 1) * group); ++ci) {
          const auto v = static_cast<float>(w[index_of(layout, volume, cin, cout, k, co, ci)]);
          lo = std::min(lo, v);
          hi = std::max(hi, v);
        }
        float scale = (hi - lo) / levels;
        if (scale < 1e-7f) scale = 1e-7f;
        const float s = round_to(scale, dtype), b = round_to(lo, dtype);
        r.scales[static_cast<std::size_t>(row * groups + gi)] = s;
        r.biases[static_cast<std::size_t>(row * groups + gi)] = b;
        for (int ci = gi * group; ci < std::min(cin, (gi + 1) * group); ++ci) {
          const std::size_t at = index_of(layout, volume, cin, cout, k, co, ci);
          const auto v = static_cast<float>(w[at]);
          const float q = std::min(std::max(std::nearbyint((v - b) / s), 0.0f), levels);
          const auto code = static_cast<std::uint32_t>(q);
          r.codes[static_cast<std::size_t>(row * padded + ci)] = code;
          // SPEC: channel j goes to word j*b/32 at bit (j*b) mod 32.
          r.words[static_cast<std::size_t>(row * words + ci * bits / 32)] |= code << ((ci * bits) % 32);
          r.dequantized[at] = round_to(s * static_cast<float>(code) + b, dtype);
        }
      }
    }
  }
  return r;
}

std::vector<float> floats(const Array& a) {
  std::vector<float> out;
  for (double v : to_doubles(a)) out.push_back(static_cast<float>(v));
  return out;
}

std::vector<std::uint8_t> bytes_of(const Array& a) {
  std::vector<std::uint8_t> out(a.nbytes());
  std::memcpy(out.data(), a.raw(), out.size());
  return out;
}

Shape layout_shape(WeightLayout layout, Int3 ks, int cin, int cout) {
  if (layout == WeightLayout::linear) return Shape{cout, cin};
  if (layout == WeightLayout::kernel_major) return Shape{ks.product(), cin, cout};
  return Shape{cout, ks.x, ks.y, ks.z, cin};
}

// ---- quantize / dequantize against the reference ---------------------------------------

struct QCase {
  WeightLayout layout;
  int bits, group, cin, cout;
  Int3 ks;
  DType dtype;
};

std::string case_name(const ::testing::TestParamInfo<QCase>& info) {
  const QCase& c = info.param;
  return std::string(layout_name(c.layout)) + "_b" + std::to_string(c.bits) + "_g" + std::to_string(c.group) + "_cin" +
         std::to_string(c.cin) + "_cout" + std::to_string(c.cout) + "_k" + std::to_string(c.ks.x) +
         std::to_string(c.ks.y) + std::to_string(c.ks.z) + "_" + std::string(dtype_name(c.dtype));
}

class QuantizeReference : public ::testing::TestWithParam<QCase> {};

TEST_P(QuantizeReference, MatchesSpecFormulasBitwise) {
  const QCase c = GetParam();
  Rng rng(std::hash<std::string>{}(case_name({c, 0})));
  const Shape shape = layout_shape(c.layout, c.ks, c.cin, c.cout);
  std::vector<double> values = random_values(rng, static_cast<std::size_t>(shape.numel()));
  // Vary the range per element so that groups have different scales.
  for (std::size_t i = 0; i < values.size(); ++i) values[i] *= 1.0 + static_cast<double>(i % 7);
  const Array w = make_array(values, shape, c.dtype);
  const std::vector<double> wv = to_doubles(w);
  const auto before = bytes_of(w);

  const QuantizedWeight q = quantize_weight(w, {.bits = c.bits, .group_size = c.group, .kernel_size = c.ks});
  EXPECT_EQ(bytes_of(w), before) << "quantize_weight modified its input";
  const int volume = static_cast<int>(c.ks.product());
  const RefQuant ref = reference(wv, c.layout, volume, c.cin, c.cout, c.bits, c.group, c.dtype);

  const int padded = (c.cin + c.group - 1) / c.group * c.group;
  EXPECT_EQ(q.layout(), c.layout);
  EXPECT_EQ(q.bits(), c.bits);
  EXPECT_EQ(q.group_size(), c.group);
  EXPECT_EQ(q.in_channels(), c.cin);
  EXPECT_EQ(q.out_channels(), c.cout);
  EXPECT_EQ(q.kernel_size(), c.ks);
  EXPECT_EQ(q.dtype(), c.dtype);
  EXPECT_EQ(q.padded_in_channels(), padded);
  const Shape w_shape = c.layout == WeightLayout::linear ? Shape{c.cout, padded * c.bits / 32}
                                                         : Shape{volume, c.cout, padded * c.bits / 32};
  const Shape s_shape =
      c.layout == WeightLayout::linear ? Shape{c.cout, padded / c.group} : Shape{volume, c.cout, padded / c.group};
  ASSERT_EQ(q.weight().shape(), w_shape);
  ASSERT_EQ(q.scales().shape(), s_shape);
  ASSERT_EQ(q.biases().shape(), s_shape);
  EXPECT_EQ(q.weight().dtype(), DType::u32);
  EXPECT_EQ(q.scales().dtype(), c.dtype);

  EXPECT_EQ(q.weight().to_vector<std::uint32_t>(), ref.words);
  EXPECT_EQ(floats(q.scales()), ref.scales);
  EXPECT_EQ(floats(q.biases()), ref.biases);

  const Array d = dequantize_weight(q);
  ASSERT_EQ(d.shape(), shape);
  EXPECT_EQ(d.dtype(), c.dtype);
  const std::vector<double> dv = to_doubles(d);
  EXPECT_EQ(dv, ref.dequantized);
  // The reconstruction error of an affine b-bit code is at most half a step
  // (plus the rounding of the stored scale/bias and of the result dtype).
  const int groups = padded / c.group;
  for (int k = 0; k < volume; ++k)
    for (int co = 0; co < c.cout; ++co)
      for (int ci = 0; ci < c.cin; ++ci) {
        const std::size_t at = index_of(c.layout, volume, c.cin, c.cout, k, co, ci);
        const auto gi = static_cast<std::size_t>((k * c.cout + co) * groups + ci / c.group);
        const double slack = c.dtype == DType::f16 ? 2e-3 * (std::abs(wv[at]) + ref.scales[gi] * 255) : 1e-6;
        ASSERT_LE(std::abs(dv[at] - wv[at]), 0.5 * ref.scales[gi] + slack) << "element " << at;
      }
  // An explicit result dtype: the same float32 values, rounded once.
  const std::vector<double> d32 = to_doubles(dequantize_weight(q, DType::f32));
  for (std::size_t i = 0; i < d32.size(); ++i) ASSERT_EQ(round_to(static_cast<float>(d32[i]), c.dtype), dv[i]);
  EXPECT_EQ(to_doubles(dequantize_weight(q, DType::f64)), d32);  // float32 values, widened exactly
}

std::vector<QCase> quantize_cases() {
  std::vector<QCase> out;
  const WeightLayout layouts[] = {WeightLayout::linear, WeightLayout::kernel_major, WeightLayout::dense_5d};
  const int cins[] = {1, 32, 45, 64, 100, 130};
  int i = 0;
  for (WeightLayout layout : layouts)
    for (int bits : {4, 8})
      for (int group : {32, 64, 128}) {
        const int cin = cins[i % 6];
        const Int3 ks = layout == WeightLayout::linear ? Int3{1} : (i % 2 ? Int3{3} : Int3{2, 1, 3});
        out.push_back({layout, bits, group, cin, 1 + i % 5, ks, i % 3 == 1 ? DType::f16 : DType::f32});
        ++i;
      }
  return out;
}

INSTANTIATE_TEST_SUITE_P(All, QuantizeReference, ::testing::ValuesIn(quantize_cases()), case_name);

// ---- hand-built cases ----------------------------------------------------------------------

Array linear_weight(const std::vector<double>& v, int cout, int cin, DType dtype = DType::f32) {
  return make_array(v, Shape{cout, cin}, dtype);
}

TEST(QuantizeWeight, PackingInt4LowBitsFirst) {
  // Codes 0..15 repeating with min 0 and max 15: scale 1, bias 0, code = value.
  std::vector<double> v(32);
  for (int j = 0; j < 32; ++j) v[static_cast<std::size_t>(j)] = (j * 7) % 16;
  v[3] = 15;
  v[4] = 0;
  const QuantizedWeight q = quantize_weight(linear_weight(v, 1, 32), {.bits = 4, .group_size = 32});
  const auto words = q.weight().to_vector<std::uint32_t>();
  ASSERT_EQ(words.size(), 4u);
  for (int word = 0; word < 4; ++word) {
    std::uint32_t expect = 0;
    for (int i = 0; i < 8; ++i)
      expect |= static_cast<std::uint32_t>(v[static_cast<std::size_t>(8 * word + i)]) << (4 * i);
    EXPECT_EQ(words[static_cast<std::size_t>(word)], expect) << "word " << word;
  }
  // Channel 0 in bits 0-3 of word 0, channel 9 in bits 4-7 of word 1.
  EXPECT_EQ(words[0] & 0xfu, static_cast<std::uint32_t>(v[0]));
  EXPECT_EQ((words[1] >> 4) & 0xfu, static_cast<std::uint32_t>(v[9]));
  EXPECT_EQ(q.scales().to_vector<float>(), std::vector<float>{1.0f});
  EXPECT_EQ(q.biases().to_vector<float>(), std::vector<float>{0.0f});
}

TEST(QuantizeWeight, PackingInt8FourPerWord) {
  std::vector<double> v(32);
  for (int j = 0; j < 32; ++j) v[static_cast<std::size_t>(j)] = 100 + 5 * j;  // 100 .. 255
  v[31] = 355;                                                                // range 255: scale 1
  const QuantizedWeight q = quantize_weight(linear_weight(v, 1, 32), {.bits = 8, .group_size = 32});
  const auto words = q.weight().to_vector<std::uint32_t>();
  ASSERT_EQ(words.size(), 8u);
  EXPECT_EQ(words[0], 0u | (5u << 8) | (10u << 16) | (15u << 24));
  EXPECT_EQ(words[7], 140u | (145u << 8) | (150u << 16) | (255u << 24));
  EXPECT_EQ(q.biases().to_vector<float>(), std::vector<float>{100.0f});
}

TEST(QuantizeWeight, RoundsHalfToEven) {
  // min 0, max 15 -> scale 1: (w - 0) / 1 lands exactly on .5 ties.
  std::vector<double> v(32, 0.0);
  v[0] = 0;
  v[1] = 15;
  v[2] = 0.5;   // -> 0
  v[3] = 1.5;   // -> 2
  v[4] = 2.5;   // -> 2
  v[5] = 3.5;   // -> 4
  v[6] = 14.5;  // -> 14
  const QuantizedWeight q = quantize_weight(linear_weight(v, 1, 32), {.bits = 4, .group_size = 32});
  const auto d = to_doubles(dequantize_weight(q));
  EXPECT_EQ(d[2], 0.0);
  EXPECT_EQ(d[3], 2.0);
  EXPECT_EQ(d[4], 2.0);
  EXPECT_EQ(d[5], 4.0);
  EXPECT_EQ(d[6], 14.0);
}

TEST(QuantizeWeight, PaddedChannelsExcludedAndZero) {
  // C_in 40 with groups of 32: padded to 64; the second group has 8 real channels in [5, 6].
  const int cin = 40;
  std::vector<double> v(cin);
  for (int j = 0; j < 32; ++j) v[static_cast<std::size_t>(j)] = -1.0 + j / 31.0;
  for (int j = 32; j < cin; ++j) v[static_cast<std::size_t>(j)] = 5.0 + (j - 32) / 7.0;
  const QuantizedWeight q = quantize_weight(linear_weight(v, 1, cin), {.bits = 8, .group_size = 32});
  EXPECT_EQ(q.padded_in_channels(), 64);
  ASSERT_EQ(q.weight().shape(), (Shape{1, 16}));
  const auto biases = q.biases().to_vector<float>();
  const auto scales = q.scales().to_vector<float>();
  EXPECT_EQ(biases[1], 5.0f);  // not 0: the padding is not part of the statistics
  EXPECT_EQ(scales[1], 1.0f / 255.0f);
  const auto words = q.weight().to_vector<std::uint32_t>();
  for (int word = 10; word < 16; ++word) EXPECT_EQ(words[static_cast<std::size_t>(word)], 0u) << word;
  EXPECT_EQ(words[9] >> 24, 255u);                   // channel 39, the last real one (word 9, byte 3): the group max
  EXPECT_EQ(words[9] & 0xffu, 255u * 4u / 7u + 1u);  // channel 36: (4/7) * 255 = 145.7 -> 146
  EXPECT_EQ(dequantize_weight(q).shape(), (Shape{1, cin}));
}

TEST(QuantizeWeight, ConstantGroupsUseTheMinimumScale) {
  std::vector<double> v(64, 0.25);
  for (int j = 32; j < 64; ++j) v[static_cast<std::size_t>(j)] = -3.0;
  for (DType dtype : {DType::f32, DType::f16}) {
    const QuantizedWeight q = quantize_weight(linear_weight(v, 1, 64, dtype), {.bits = 4, .group_size = 32});
    const auto s = to_doubles(q.scales());
    EXPECT_EQ(s[0], round_to(1e-7f, dtype));
    EXPECT_EQ(s[1], round_to(1e-7f, dtype));
    EXPECT_GT(s[0], 0.0);
    for (std::uint32_t word : q.weight().to_vector<std::uint32_t>()) EXPECT_EQ(word, 0u);
    EXPECT_EQ(to_doubles(dequantize_weight(q)), v);  // exact: code 0, bias = the constant
  }
}

TEST(QuantizeWeight, DefaultGroupSizeAndBits) {
  Rng rng(3);
  const Array w63 = make_array(random_values(rng, 2 * 63), Shape{2, 63}, DType::f32);
  const Array w64 = make_array(random_values(rng, 2 * 64), Shape{2, 64}, DType::f32);
  EXPECT_EQ(quantize_weight(w63).group_size(), 32);
  EXPECT_EQ(quantize_weight(w64).group_size(), 64);
  EXPECT_EQ(quantize_weight(w64).bits(), 8);
}

TEST(QuantizeWeight, KernelSizeInference) {
  Rng rng(4);
  const Array w27 = make_array(random_values(rng, 27 * 3 * 2), Shape{27, 3, 2}, DType::f32);
  EXPECT_EQ(quantize_weight(w27).kernel_size(), Int3{3});
  const Array w8 = make_array(random_values(rng, 8 * 3 * 2), Shape{8, 3, 2}, DType::f32);
  EXPECT_EQ(quantize_weight(w8).kernel_size(), Int3{2});
  const Array w6 = make_array(random_values(rng, 6 * 3 * 2), Shape{6, 3, 2}, DType::f32);
  EXPECT_EQ(quantize_weight(w6, {.kernel_size = Int3{1, 2, 3}}).kernel_size(), (Int3{1, 2, 3}));
  const Array d = make_array(random_values(rng, 2 * 1 * 2 * 3 * 3), Shape{2, 1, 2, 3, 3}, DType::f32);
  EXPECT_EQ(quantize_weight(d).kernel_size(), (Int3{1, 2, 3}));
  EXPECT_EQ(quantize_weight(d).layout(), WeightLayout::dense_5d);
}

TEST(QuantizeWeight, Errors) {
  Rng rng(5);
  const Array w = make_array(random_values(rng, 4 * 40), Shape{4, 40}, DType::f32);
  expect_error<ValueError>([&] { quantize_weight(w, {.bits = 3}); }, {"[quantize_weight]", "'bits'", "3"});
  expect_error<ValueError>([&] { quantize_weight(w, {.bits = 8, .group_size = 48}); },
                           {"[quantize_weight]", "'group_size'", "48"});
  expect_error<TypeError>([&] { quantize_weight(w.astype(DType::bf16)); },
                          {"[quantize_weight]", "'weight'", "bfloat16"});
  expect_error<TypeError>([&] { quantize_weight(w.astype(DType::f64)); }, {"[quantize_weight]", "'weight'", "float64"});
  expect_error<TypeError>(
      [&] {
        quantize_weight(Array::zeros(Shape{2, 3}, DType::i32));
      },
      {"[quantize_weight]", "'weight'", "int32"});
  expect_error<ValueError>(
      [&] {
        quantize_weight(Array::zeros(Shape{2, 3, 4, 5}, DType::f32));
      },
      {"[quantize_weight]", "'weight'", "(2, 3, 4, 5)"});
  expect_error<ValueError>(
      [&] {
        quantize_weight(Array::zeros(Shape{0, 3}, DType::f32));
      },
      {"[quantize_weight]", "'weight'", "(0, 3)"});
  expect_error<ValueError>(
      [&] {
        quantize_weight(Array::zeros(Shape{6, 3, 2}, DType::f32));
      },
      {"[quantize_weight]", "'kernel_size'", "K = 6"});
  expect_error<ValueError>(
      [&] {
        quantize_weight(Array::zeros(Shape{6, 3, 2}, DType::f32), {.kernel_size = Int3{2}});
      },
      {"[quantize_weight]", "'kernel_size'", "(2, 2, 2)"});
  expect_error<ValueError>(
      [&] {
        quantize_weight(Array::zeros(Shape{2, 1, 2, 3, 3}, DType::f32), {.kernel_size = Int3{3}});
      },
      {"[quantize_weight]", "'kernel_size'", "(1, 2, 3)"});
  expect_error<ValueError>([&] { quantize_weight(w, {.kernel_size = Int3{3}}); },
                           {"[quantize_weight]", "'kernel_size'"});
  std::vector<double> bad = to_doubles(w);
  bad[17] = std::numeric_limits<double>::quiet_NaN();
  expect_error<ValueError>(
      [&] {
        quantize_weight(make_array(bad, Shape{4, 40}, DType::f32));
      },
      {"[quantize_weight]", "'weight'", "non-finite"});
  bad[17] = std::numeric_limits<double>::infinity();
  expect_error<ValueError>(
      [&] {
        quantize_weight(make_array(bad, Shape{4, 40}, DType::f32));
      },
      {"[quantize_weight]", "'weight'", "non-finite"});

  const QuantizedWeight q = quantize_weight(w, {.bits = 4});
  expect_error<TypeError>([&] { dequantize_weight(q, DType::i32); }, {"[dequantize_weight]", "'dtype'", "int32"});
}

TEST(QuantizedWeightCtor, ValidatesEveryArgument) {
  Rng rng(6);
  const QuantizedWeight q = quantize_weight(make_array(random_values(rng, 3 * 2 * 40), Shape{3, 2, 40}, DType::f32),
                                            {.bits = 4, .group_size = 32, .kernel_size = Int3{3, 1, 1}});
  ASSERT_EQ(q.layout(), WeightLayout::kernel_major);  // (K=3, C_in=2, C_out=40)
  const Array& wt = q.weight();
  const Array& sc = q.scales();
  const Array& bi = q.biases();
  auto make = [&](Array w, Array s, Array b, int g, int bits, int cin, int cout, Int3 ks, WeightLayout l) {
    return QuantizedWeight(std::move(w), std::move(s), std::move(b), g, bits, cin, cout, ks, l);
  };
  const Int3 ks{3, 1, 1};
  const auto km = WeightLayout::kernel_major;
  // The valid arguments round-trip.
  const QuantizedWeight same = make(wt, sc, bi, 32, 4, 2, 40, ks, km);
  EXPECT_EQ(to_doubles(dequantize_weight(same)), to_doubles(dequantize_weight(q)));
  expect_error<ValueError>([&] { make(wt, sc, bi, 32, 3, 2, 40, ks, km); }, {"[QuantizedWeight]", "'bits'", "3"});
  expect_error<ValueError>([&] { make(wt, sc, bi, 48, 4, 2, 40, ks, km); }, {"[QuantizedWeight]", "'group_size'"});
  expect_error<ValueError>([&] { make(wt, sc, bi, 32, 4, 0, 40, ks, km); }, {"[QuantizedWeight]", "'in_channels'"});
  expect_error<ValueError>([&] { make(wt, sc, bi, 32, 4, 2, 0, ks, km); }, {"[QuantizedWeight]", "'out_channels'"});
  expect_error<ValueError>(
      [&] {
        make(wt, sc, bi, 32, 4, 2, 40, Int3{0, 1, 1}, km);
      },
      {"[QuantizedWeight]", "'kernel_size'"});
  expect_error<ValueError>([&] { make(wt, sc, bi, 32, 4, 2, 40, ks, WeightLayout::linear); },
                           {"[QuantizedWeight]", "'kernel_size'", "linear"});
  expect_error<TypeError>([&] { make(wt.astype(DType::i32), sc, bi, 32, 4, 2, 40, ks, km); },
                          {"[QuantizedWeight]", "'weight'", "uint32"});
  expect_error<TypeError>([&] { make(wt, sc.astype(DType::f64), bi.astype(DType::f64), 32, 4, 2, 40, ks, km); },
                          {"[QuantizedWeight]", "'scales'", "float64"});
  expect_error<TypeError>([&] { make(wt, sc, bi.astype(DType::f16), 32, 4, 2, 40, ks, km); },
                          {"[QuantizedWeight]", "'biases'", "float16"});
  expect_error<ValueError>([&] { make(wt, sc, bi, 32, 8, 2, 40, ks, km); },
                           {"[QuantizedWeight]", "'weight'", "(3, 40, 8)"});  // 8-bit codes need 8 words
  expect_error<ValueError>(
      [&] {
        make(wt, sc, bi, 32, 4, 2, 40, Int3{2, 1, 1}, km);
      },
      {"[QuantizedWeight]", "'weight'", "(2, 40, 4)"});  // K = 2 rows expected
  expect_error<ValueError>(
      [&] {
        make(wt, sc.reshape(Shape{3, 40}), bi, 32, 4, 2, 40, ks, km);
      },
      {"[QuantizedWeight]", "'scales'"});
  expect_error<ValueError>(
      [&] {
        make(wt, sc, bi.reshape(Shape{120, 1}), 32, 4, 2, 40, ks, km);
      },
      {"[QuantizedWeight]", "'biases'"});
  expect_error<ValueError>([&] { make(wt, sc, bi, 32, 4, 33, 40, ks, km); }, {"[QuantizedWeight]", "'weight'"});
  expect_error<ValueError>([&] { make(Array(), sc, bi, 32, 4, 2, 40, ks, km); }, {"[QuantizedWeight]", "'weight'"});
  EXPECT_TRUE(q.to(Device::cpu()).weight().shares_buffer_with(q.weight()));
  EXPECT_EQ(parse_weight_layout("dense_5d"), WeightLayout::dense_5d);
  expect_error<ValueError>([&] { parse_weight_layout("nchw"); }, {"[QuantizedWeight]", "'layout'", "nchw"});
}

// ---- ops on quantized weights -----------------------------------------------------------

enum class OpKind { conv, conv_strided, subm, transposed, generative, norm_subm, norm_transposed, norm_generative };

struct OpCase {
  OpKind kind;
  WeightLayout layout;
  DType feat_dtype, weight_dtype;
  int bits;
};

SparseTensor run(OpKind kind, const SparseTensor& x, const auto& w, const std::optional<Array>& bias) {
  switch (kind) {
    case OpKind::conv:
      return ops::conv3d(x, w, bias, {.kernel_size = Int3{3}});
    case OpKind::conv_strided:
      return ops::conv3d(x, w, bias, {.kernel_size = Int3{3}, .stride = Int3{2}});
    case OpKind::subm:
      return ops::subm_conv3d(x, w, bias, {.kernel_size = Int3{3}});
    case OpKind::transposed:
      return ops::conv_transpose3d(x, w, bias, {.kernel_size = Int3{3}, .stride = Int3{2}});
    case OpKind::generative:
      return ops::generative_conv_transpose3d(x, w, bias, {.kernel_size = Int3{3}, .stride = Int3{2}});
    case OpKind::norm_subm:
      return ops::normalized_subm_conv3d(x, w, bias, {.kernel_size = Int3{3}});
    case OpKind::norm_transposed:
      return ops::normalized_conv_transpose3d(x, w, bias, {.kernel_size = Int3{3}, .stride = Int3{2}});
    case OpKind::norm_generative:
      return ops::normalized_generative_conv_transpose3d(x, w, bias, {.kernel_size = Int3{3}, .stride = Int3{2}});
  }
  throw std::logic_error("unreachable");
}

class QuantizedOps : public ::testing::TestWithParam<OpCase> {};

TEST_P(QuantizedOps, EqualTheOpOnTheDequantizedWeight) {
  const OpCase c = GetParam();
  Rng rng(static_cast<std::uint64_t>(c.kind) * 131 + static_cast<std::uint64_t>(c.layout) * 17 + c.bits);
  const bool transposed = c.kind == OpKind::transposed || c.kind == OpKind::generative ||
                          c.kind == OpKind::norm_transposed || c.kind == OpKind::norm_generative;
  const I3 in_stride = transposed ? I3{2, 2, 2} : I3{1, 1, 1};
  const auto coords = random_coords(rng, 2, -4, 4, in_stride, 0.3);
  const auto n = static_cast<std::int64_t>(coords.size());
  const int cin = 37, cout = 5;
  const Array feats = make_array(random_values(rng, static_cast<std::size_t>(n * cin)), Shape{n, cin}, c.feat_dtype);
  const SparseTensor x = SparseTensor::from_coords(
      coords_array(coords), feats, {.stride = Int3{in_stride[0]}, .manager = CoordinateManager::create()});
  const Shape shape = layout_shape(c.layout, Int3{3}, cin, cout);
  const Array w = make_array(random_values(rng, static_cast<std::size_t>(shape.numel())), shape, c.weight_dtype);
  const Array b = make_array(random_values(rng, cout), Shape{cout}, c.feat_dtype);
  const QuantizedWeight q = quantize_weight(w, {.bits = c.bits});
  const auto feats_before = bytes_of(x.feats());

  const SparseTensor y = run(c.kind, x, q, b);
  const SparseTensor ref = run(c.kind, x, dequantize_weight(q, c.feat_dtype), b);
  EXPECT_EQ(bytes_of(x.feats()), feats_before);
  ASSERT_EQ(y.rows(), ref.rows());
  EXPECT_EQ(y.dtype(), c.feat_dtype);
  EXPECT_EQ(coords_from_array(y.coords(), y.rows()), coords_from_array(ref.coords(), ref.rows()));
  // Same float op on the same dequantized weight: equal to the last bit.
  EXPECT_EQ(to_doubles(y.feats().rows(0, y.rows())), to_doubles(ref.feats().rows(0, ref.rows())));
}

std::vector<OpCase> op_cases() {
  std::vector<OpCase> out;
  const OpKind kinds[] = {
      OpKind::conv,      OpKind::conv_strided,    OpKind::subm,           OpKind::transposed, OpKind::generative,
      OpKind::norm_subm, OpKind::norm_transposed, OpKind::norm_generative};
  int i = 0;
  for (OpKind k : kinds)
    for (WeightLayout layout : {WeightLayout::kernel_major, WeightLayout::dense_5d}) {
      const DType feat = i % 3 == 0 ? DType::f16 : (i % 3 == 1 ? DType::f32 : DType::f64);
      const DType wd = i % 2 ? DType::f16 : DType::f32;
      out.push_back({k, layout, feat, wd, i % 4 < 2 ? 4 : 8});
      ++i;
    }
  return out;
}

std::string op_case_name(const ::testing::TestParamInfo<OpCase>& info) {
  constexpr const char* k_kinds[] = {"conv",      "conv_strided",    "subm",           "transposed", "generative",
                                     "norm_subm", "norm_transposed", "norm_generative"};
  const OpCase& c = info.param;
  return std::string(k_kinds[static_cast<int>(c.kind)]) + "_" + std::string(layout_name(c.layout)) + "_x" +
         std::string(dtype_name(c.feat_dtype)) + "_w" + std::string(dtype_name(c.weight_dtype)) + "_b" +
         std::to_string(c.bits);
}

INSTANTIATE_TEST_SUITE_P(All, QuantizedOps, ::testing::ValuesIn(op_cases()), op_case_name);

TEST(QuantizedOps, LinearAndPointwise) {
  Rng rng(9);
  const auto coords = random_coords(rng, 1, -3, 3, I3{1, 1, 1}, 0.5);
  const auto n = static_cast<std::int64_t>(coords.size());
  const int cin = 70, cout = 6;
  for (DType dtype : {DType::f32, DType::f16}) {
    const Array feats = make_array(random_values(rng, static_cast<std::size_t>(n * cin)), Shape{n, cin}, dtype);
    const SparseTensor x =
        SparseTensor::from_coords(coords_array(coords), feats, {.manager = CoordinateManager::create()});
    const Array w = make_array(random_values(rng, cout * cin), Shape{cout, cin}, dtype);
    const Array b = make_array(random_values(rng, cout), Shape{cout}, dtype);
    for (int bits : {4, 8}) {
      const QuantizedWeight q = quantize_weight(w, {.bits = bits});
      const Array d = dequantize_weight(q, dtype);
      const SparseTensor y = ops::linear(x, q, b);
      EXPECT_EQ(y.key(), x.key());
      EXPECT_EQ(to_doubles(y.feats()), to_doubles(ops::linear(x, d, b).feats()));
      // A pointwise conv3d / subm_conv3d take the linear layout too.
      EXPECT_EQ(to_doubles(ops::conv3d(x, q, b, {.kernel_size = Int3{1}}).feats()),
                to_doubles(ops::conv3d(x, d, b, {.kernel_size = Int3{1}}).feats()));
      EXPECT_EQ(to_doubles(ops::subm_conv3d(x, q, std::nullopt, {.kernel_size = Int3{1}}).feats()),
                to_doubles(ops::subm_conv3d(x, d, std::nullopt, {.kernel_size = Int3{1}}).feats()));
    }
  }
}

TEST(QuantizedOps, LinearOnOneByOneSpatialWeights) {
  Rng rng(10);
  const auto coords = random_coords(rng, 1, -3, 3, I3{1, 1, 1}, 0.5);
  const auto n = static_cast<std::int64_t>(coords.size());
  const int cin = 33, cout = 4;
  const Array feats = make_array(random_values(rng, static_cast<std::size_t>(n * cin)), Shape{n, cin}, DType::f32);
  const SparseTensor x =
      SparseTensor::from_coords(coords_array(coords), feats, {.manager = CoordinateManager::create()});
  const Array km = make_array(random_values(rng, cin * cout), Shape{1, cin, cout}, DType::f32);
  const QuantizedWeight qk = quantize_weight(km);
  const Array dk = dequantize_weight(qk);  // (1, C_in, C_out)
  // linear(x, W) with W = dk^T.
  std::vector<double> wt(static_cast<std::size_t>(cin * cout));
  const auto dkv = to_doubles(dk);
  for (int ci = 0; ci < cin; ++ci)
    for (int co = 0; co < cout; ++co)
      wt[static_cast<std::size_t>(co * cin + ci)] = dkv[static_cast<std::size_t>(ci * cout + co)];
  const auto expect = to_doubles(ops::linear(x, make_array(wt, Shape{cout, cin}, DType::f32)).feats());
  const auto got = to_doubles(ops::linear(x, qk).feats());
  ASSERT_EQ(got.size(), expect.size());
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expect[i], 1e-5 * (1 + std::abs(expect[i])));
  expect_error<ValueError>([&] { ops::linear(x, qk, Array::zeros(Shape{cout + 1}, DType::f32)); },
                           {"[linear]", "'bias'"});
  const Array dense = make_array(random_values(rng, cin * cout), Shape{cout, 1, 1, 1, cin}, DType::f32);
  const QuantizedWeight qd = quantize_weight(dense);
  EXPECT_EQ(to_doubles(ops::linear(x, qd).feats()),
            to_doubles(ops::linear(x, dequantize_weight(qd).reshape(Shape{cout, cin})).feats()));
}

TEST(QuantizedOps, Errors) {
  Rng rng(11);
  const auto m = CoordinateManager::create();
  const auto coords = random_coords(rng, 1, -3, 3, I3{1, 1, 1}, 0.5);
  const auto n = static_cast<std::int64_t>(coords.size());
  const Array feats = make_array(random_values(rng, static_cast<std::size_t>(n * 8)), Shape{n, 8}, DType::f32);
  const SparseTensor x = SparseTensor::from_coords(coords_array(coords), feats, {.manager = m});
  const QuantizedWeight q27 =
      quantize_weight(make_array(random_values(rng, 27 * 8 * 4), Shape{27, 8, 4}, DType::f32), {.bits = 4});
  const QuantizedWeight q_wrong_cin =
      quantize_weight(make_array(random_values(rng, 27 * 9 * 4), Shape{27, 9, 4}, DType::f32));
  const QuantizedWeight q_lin = quantize_weight(make_array(random_values(rng, 4 * 8), Shape{4, 8}, DType::f32));
  expect_error<ValueError>(m, [&] { ops::conv3d(x, q_wrong_cin); }, {"[conv3d]", "'weight'", "C_in = 9", "8"});
  expect_error<ValueError>(m, [&] { ops::subm_conv3d(x, q27, std::nullopt, {.kernel_size = Int3{5}}); },
                           {"[subm_conv3d]", "'weight'", "(3, 3, 3)", "(5, 5, 5)"});
  expect_error<ValueError>(m, [&] { ops::conv3d(x, q_lin); }, {"[conv3d]", "'weight'", "1x1x1"});
  expect_error<ValueError>(m, [&] { ops::linear(x, q27); }, {"[linear]", "'weight'", "(3, 3, 3)"});
  expect_error<ValueError>(m, [&] { ops::linear(x, q_lin, Array::zeros(Shape{5}, DType::f32)); },
                           {"[linear]", "'bias'"});
  expect_error<ValueError>(m, [&] { ops::conv_transpose3d(x, q27, std::nullopt, {.kernel_size = Int3{3}}); },
                           {"[conv_transpose3d]", "stride"});
}

}  // namespace
}  // namespace lattice::testing

// Named feature ops (SPEC §7, Appendix A "Feature ops"): linear, the named
// activations, dropout, layer_norm and rms_norm, per element against plain
// float64 references written here, for f32/f16/bf16/f64 with the SPEC §12
// tolerances. Inputs carry capacity rows past the active ones holding garbage
// (1e30) that must never be read; outputs keep the input's identity and zero
// their capacity rows; inputs are left untouched.
#include <cmath>
#include <cstdint>
#include <numbers>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "lattice/ops/features.hpp"
#include "support/expect_error.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

using Manager = std::shared_ptr<CoordinateManager>;

constexpr double k_garbage = 1e30;
constexpr DType k_dtypes[] = {DType::f32, DType::f16, DType::bf16, DType::f64};
constexpr int k_channels[] = {1, 3, 17, 64};
constexpr std::int64_t k_rows[] = {0, 1, 2, 57};

// `rows` active rows with `extra` garbage capacity rows; coordinates spread
// over three batch items with negative and large values.
SparseTensor make_tensor(const Manager& m, const std::vector<double>& values, int channels, DType dtype,
                         std::int64_t extra = 3) {
  const auto rows = static_cast<std::int64_t>(values.size()) / channels;
  const std::int64_t capacity = rows + extra;
  std::vector<Coord> coords;
  for (std::int64_t i = 0; i < capacity; ++i) {
    const int v = static_cast<int>(i);
    coords.push_back({v % 3, v - 1000, -2 * v, 100000 - v});
  }
  std::vector<double> all = values;
  all.resize(static_cast<std::size_t>(capacity * channels), k_garbage);
  return SparseTensor::from_coords(coords_array(coords), make_array(all, Shape{capacity, channels}, dtype),
                                   {.manager = m, .active_rows = rows});
}

// Values as the dtype stores them (so references use the rounded inputs).
std::vector<double> rounded(const std::vector<double>& v, DType dtype) {
  return to_doubles(make_array(v, Shape{static_cast<std::int64_t>(v.size())}, dtype));
}

// The active rows of y match `expect` and the capacity rows are zero.
void expect_rows(const SparseTensor& y, const std::vector<double>& expect, const std::vector<double>& mag, double tol) {
  const std::int64_t rows = y.rows();
  const auto got = to_doubles(y.feats());
  const auto c = static_cast<std::size_t>(y.channels());
  const std::vector<double> active(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(rows * y.channels()));
  const std::string report = compare_elements(active, expect, mag, tol, c == 0 ? 1 : c);
  EXPECT_TRUE(report.empty()) << report;
  for (std::size_t i = active.size(); i < got.size(); ++i) ASSERT_EQ(got[i], 0.0) << "capacity element " << i;
}

// ---- linear ------------------------------------------------------------------

TEST(Linear, MatchesReferencePerElement) {
  int case_id = 0;
  for (DType dtype : k_dtypes) {
    for (int cin : {1, 5, 32}) {
      for (int cout : {1, 7, 16}) {
        for (std::int64_t rows : k_rows) {
          for (bool with_bias : {false, true}) {
            SCOPED_TRACE(std::string(dtype_name(dtype)) + " cin " + std::to_string(cin) + " cout " +
                         std::to_string(cout) + " rows " + std::to_string(rows) + " bias " + std::to_string(with_bias));
            Rng rng(static_cast<std::uint64_t>(++case_id));
            const auto m = CoordinateManager::create();
            const auto xv = rounded(random_values(rng, static_cast<std::size_t>(rows * cin)), dtype);
            const auto wv = rounded(random_values(rng, static_cast<std::size_t>(cout * cin)), dtype);
            const auto bv = rounded(random_values(rng, static_cast<std::size_t>(cout)), dtype);
            const SparseTensor x = make_tensor(m, xv, cin, dtype);
            const Array w = make_array(wv, Shape{cout, cin}, dtype);
            std::optional<Array> b;
            if (with_bias) b = make_array(bv, Shape{cout}, dtype);
            const auto before = bytes_of(x.feats());
            const SparseTensor y = ops::linear(x, w, b);
            EXPECT_EQ(y.key(), x.key());
            ASSERT_EQ(y.channels(), cout);
            EXPECT_EQ(bytes_of(x.feats()), before);
            std::vector<double> expect(static_cast<std::size_t>(rows * cout)), mag(expect.size());
            for (std::int64_t r = 0; r < rows; ++r) {
              for (int o = 0; o < cout; ++o) {
                double acc = with_bias ? bv[static_cast<std::size_t>(o)] : 0.0;
                double mg = with_bias ? std::abs(bv[static_cast<std::size_t>(o)]) : 0.0;
                for (int i = 0; i < cin; ++i) {
                  const double xi = xv[static_cast<std::size_t>(r * cin + i)];
                  const double wi = wv[static_cast<std::size_t>(o * cin + i)];
                  acc += xi * wi;
                  mg += std::abs(xi * wi);
                }
                expect[static_cast<std::size_t>(r * cout + o)] = acc;
                mag[static_cast<std::size_t>(r * cout + o)] = mg;
              }
            }
            expect_rows(y, expect, mag, tolerance_for(dtype));
          }
        }
      }
    }
  }
}

TEST(Linear, ErrorPaths) {
  const auto m = CoordinateManager::create();
  const SparseTensor x = make_tensor(m, std::vector<double>(12, 0.5), 4, DType::f32);
  expect_error<ValueError>(
      [&] {
        ops::linear(x, Array::zeros(Shape{3, 4, 1}, DType::f32));
      },
      {"[linear]", "'weight'", "(C_out, C_in)"});
  expect_error<ValueError>(
      [&] {
        ops::linear(x, Array::zeros(Shape{3, 5}, DType::f32));
      },
      {"[linear]", "'weight'", "C_in = 5"});
  expect_error<TypeError>(
      [&] {
        ops::linear(x, Array::zeros(Shape{3, 4}, DType::f16));
      },
      {"[linear]", "'weight'", "float16"});
  expect_error<ValueError>([&] { ops::linear(x, Array(), std::nullopt); }, {"[linear]", "'weight'", "undefined"});
  expect_error<ValueError>(
      [&] {
        ops::linear(x, Array::zeros(Shape{3, 4}, DType::f32), Array::zeros(Shape{4}, DType::f32));
      },
      {"[linear]", "'bias'", "(3,)"});
  expect_error<ValueError>(
      [&] {
        ops::linear(SparseTensor(), Array::zeros(Shape{3, 4}, DType::f32));
      },
      {"[linear]", "'x'", "undefined"});
}

// ---- named activations ------------------------------------------------------------

double ref_activation(const std::string& name, double v) {
  if (name == "leaky_relu") return v > 0 ? v : 0.01 * v;
  if (name == "leaky_relu_0.2") return v > 0 ? v : 0.2 * v;
  if (name == "gelu") return 0.5 * v * (1 + std::erf(v / std::numbers::sqrt2));
  if (name == "gelu_tanh") {
    const double k = std::sqrt(2 / std::numbers::pi);
    return 0.5 * v * (1 + std::tanh(k * (v + 0.044715 * v * v * v)));
  }
  if (name == "silu") return v / (1 + std::exp(-v));
  if (name == "sigmoid") return 1 / (1 + std::exp(-v));
  if (name == "tanh") return std::tanh(v);
  if (name == "softplus") return v > 20 ? v : std::log1p(std::exp(v));
  ADD_FAILURE() << "unknown " << name;
  return 0;
}

SparseTensor apply_named(const std::string& name, const SparseTensor& x) {
  if (name == "leaky_relu") return ops::leaky_relu(x);
  if (name == "leaky_relu_0.2") return ops::leaky_relu(x, 0.2);
  if (name == "gelu") return ops::gelu(x);
  if (name == "gelu_tanh") return ops::gelu(x, true);
  if (name == "silu") return ops::silu(x);
  if (name == "sigmoid") return ops::sigmoid(x);
  if (name == "tanh") return ops::tanh(x);
  return ops::softplus(x);
}

TEST(NamedActivations, MatchReferencePerElement) {
  const std::vector<std::string> names{"leaky_relu", "leaky_relu_0.2", "gelu", "gelu_tanh",
                                       "silu",       "sigmoid",        "tanh", "softplus"};
  int case_id = 0;
  for (DType dtype : k_dtypes) {
    for (int c : k_channels) {
      for (std::int64_t rows : k_rows) {
        Rng rng(static_cast<std::uint64_t>(100 + ++case_id));
        std::vector<double> v(static_cast<std::size_t>(rows * c));
        // Mostly [-4, 4], some beyond softplus's threshold of 20.
        for (double& e : v) e = rng.integer(0, 9) == 0 ? rng.uniform(-30, 30) : rng.uniform(-4, 4);
        v = rounded(v, dtype);
        const auto m = CoordinateManager::create();
        const SparseTensor x = make_tensor(m, v, c, dtype);
        for (const auto& name : names) {
          SCOPED_TRACE(name + " " + std::string(dtype_name(dtype)) + " c " + std::to_string(c) + " rows " +
                       std::to_string(rows));
          const SparseTensor y = apply_named(name, x);
          EXPECT_EQ(y.key(), x.key());
          std::vector<double> expect(v.size()), mag(v.size());
          for (std::size_t i = 0; i < v.size(); ++i) {
            expect[i] = ref_activation(name, v[i]);
            mag[i] = std::max({std::abs(expect[i]), 1e-3 * std::abs(v[i]), 1e-30});
          }
          expect_rows(y, expect, mag, 4 * tolerance_for(dtype));
        }
      }
    }
  }
}

TEST(NamedActivations, ErrorsNameTheOp) {
  expect_error<ValueError>([] { ops::gelu(SparseTensor()); }, {"[gelu]", "'x'", "undefined"});
  expect_error<ValueError>([] { ops::tanh(SparseTensor()); }, {"[tanh]", "'x'"});
  const auto m = CoordinateManager::create();
  const SparseTensor x = make_tensor(m, {1, 2}, 2, DType::f32);
  expect_error<ValueError>([&] { ops::leaky_relu(x, std::nan("")); }, {"[leaky_relu]", "'negative_slope'", "nan"});
}

// ---- dropout --------------------------------------------------------------------

// Independent restatement of the documented generator: SplitMix64's
// finaliser chained over (seed, row, channel); keep when the top 53 bits as a
// fraction are >= p.
std::uint64_t splitmix(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
bool ref_keep(std::uint64_t seed, std::uint64_t row, std::uint64_t ch, double p) {
  const std::uint64_t h = splitmix(splitmix(splitmix(seed) ^ row) ^ ch);
  return std::ldexp(static_cast<double>(h >> 11), -53) >= p;
}

TEST(Dropout, MatchesTheDocumentedMask) {
  int case_id = 0;
  for (DType dtype : k_dtypes) {
    for (double p : {0.1, 0.5, 0.9}) {
      for (std::uint64_t seed : {0ULL, 7ULL, 0xDEADBEEFCAFEULL}) {
        Rng rng(static_cast<std::uint64_t>(200 + ++case_id));
        const int c = 13;
        const std::int64_t rows = 300;
        const auto v = rounded(random_values(rng, static_cast<std::size_t>(rows * c)), dtype);
        const auto m = CoordinateManager::create();
        const SparseTensor x = make_tensor(m, v, c, dtype);
        const auto before = bytes_of(x.feats());
        const SparseTensor y = ops::dropout(x, {p, seed, true});
        EXPECT_EQ(y.key(), x.key());
        EXPECT_EQ(bytes_of(x.feats()), before);
        std::vector<double> expect(v.size()), mag(v.size());
        std::int64_t kept = 0;
        for (std::int64_t r = 0; r < rows; ++r) {
          for (int j = 0; j < c; ++j) {
            const auto i = static_cast<std::size_t>(r * c + j);
            const bool keep = ref_keep(seed, static_cast<std::uint64_t>(r), static_cast<std::uint64_t>(j), p);
            kept += keep;
            expect[i] = keep ? v[i] / (1 - p) : 0.0;
            mag[i] = std::abs(expect[i]) + 1e-30;
          }
        }
        SCOPED_TRACE(std::string(dtype_name(dtype)) + " p " + std::to_string(p) + " seed " + std::to_string(seed));
        expect_rows(y, expect, mag, tolerance_for(dtype));
        // The mask is roughly Bernoulli(1 - p): within 6 sigma.
        const double n = static_cast<double>(rows * c);
        EXPECT_NEAR(static_cast<double>(kept), n * (1 - p), 6 * std::sqrt(n * p * (1 - p)));
        // Same seed -> same result; another seed -> another mask.
        EXPECT_EQ(bytes_of(ops::dropout(x, {p, seed, true}).feats()), bytes_of(y.feats()));
        EXPECT_NE(bytes_of(ops::dropout(x, {p, seed + 1, true}).feats()), bytes_of(y.feats()));
      }
    }
  }
}

TEST(Dropout, IdentityWhenEvaluatingOrPZero) {
  for (DType dtype : k_dtypes) {
    for (std::int64_t rows : k_rows) {
      Rng rng(static_cast<std::uint64_t>(rows) + 300);
      const auto v = rounded(random_values(rng, static_cast<std::size_t>(rows * 5)), dtype);
      const auto m = CoordinateManager::create();
      const SparseTensor x = make_tensor(m, v, 5, dtype);
      std::vector<double> mag(v.size(), 1.0);
      expect_rows(ops::dropout(x, {0.7, 3, false}), v, mag, 0.0);
      expect_rows(ops::dropout(x, {0.0, 3, true}), v, mag, 0.0);
      // p = 0.5 on the same input: exactly x * 2 where kept (the scale is exact).
      std::vector<double> half(v.size());
      for (std::size_t i = 0; i < v.size(); ++i) half[i] = ref_keep(3, i / 5, i % 5, 0.5) ? v[i] * 2 : 0.0;
      expect_rows(ops::dropout(x, {0.5, 3, true}), half, mag, 0.0);
    }
  }
}

TEST(Dropout, ErrorPaths) {
  const auto m = CoordinateManager::create();
  const SparseTensor x = make_tensor(m, {1, 2, 3, 4}, 2, DType::f32);
  expect_error<ValueError>([&] { ops::dropout(x, {1.0, 0, true}); }, {"[dropout]", "'p'", "[0, 1)"});
  expect_error<ValueError>([&] { ops::dropout(x, {-0.1, 0, true}); }, {"[dropout]", "'p'", "-0.1"});
  expect_error<ValueError>([&] { ops::dropout(x, {std::nan(""), 0, false}); }, {"[dropout]", "'p'", "nan"});
  expect_error<ValueError>([&] { ops::dropout(SparseTensor(), {}); }, {"[dropout]", "'x'", "undefined"});
}

// ---- layer_norm / rms_norm ----------------------------------------------------------

struct NormRef {
  std::vector<double> values, magnitude;
};

NormRef ref_norm(bool layer, const std::vector<double>& x, int c, const std::vector<double>& w,
                 const std::vector<double>& b, double eps) {
  const std::size_t rows = x.size() / static_cast<std::size_t>(c);
  NormRef out{std::vector<double>(x.size()), std::vector<double>(x.size())};
  for (std::size_t r = 0; r < rows; ++r) {
    const double* xr = x.data() + r * static_cast<std::size_t>(c);
    double mean = 0, abs_sum = 0;
    for (int j = 0; j < c; ++j) {
      mean += xr[j];
      abs_sum += std::abs(xr[j]);
    }
    mean /= c;
    if (!layer) mean = 0;
    double sq = 0;
    for (int j = 0; j < c; ++j) sq += (xr[j] - mean) * (xr[j] - mean);
    const double inv = 1 / std::sqrt(sq / c + eps);
    for (int j = 0; j < c; ++j) {
      const std::size_t i = r * static_cast<std::size_t>(c) + static_cast<std::size_t>(j);
      const double wj = w.empty() ? 1.0 : w[static_cast<std::size_t>(j)];
      const double bj = b.empty() ? 0.0 : b[static_cast<std::size_t>(j)];
      out.values[i] = (xr[j] - mean) * inv * wj + bj;
      // Accumulation in the compute type: error grows with the row's sums.
      out.magnitude[i] = (std::abs(xr[j] - mean) + abs_sum) * inv * std::abs(wj) + std::abs(bj);
    }
  }
  return out;
}

TEST(Norms, LayerAndRmsMatchReferencePerElement) {
  int case_id = 0;
  for (DType dtype : k_dtypes) {
    for (int c : k_channels) {
      for (std::int64_t rows : k_rows) {
        for (int affine = 0; affine < 2; ++affine) {
          Rng rng(static_cast<std::uint64_t>(400 + ++case_id));
          // An offset per case: layer_norm must remove the mean.
          const double shift = rng.uniform(-3, 3);
          std::vector<double> v = random_values(rng, static_cast<std::size_t>(rows * c));
          for (double& e : v) e += shift;
          v = rounded(v, dtype);
          std::vector<double> w, b;
          std::optional<Array> wa, ba;
          if (affine) {
            w = rounded(random_values(rng, static_cast<std::size_t>(c)), dtype);
            b = rounded(random_values(rng, static_cast<std::size_t>(c)), dtype);
            wa = make_array(w, Shape{c}, dtype);
            ba = make_array(b, Shape{c}, dtype);
          }
          const double eps = affine ? 1e-3 : 1e-5;
          const auto m = CoordinateManager::create();
          const SparseTensor x = make_tensor(m, v, c, dtype);
          const auto before = bytes_of(x.feats());
          SCOPED_TRACE(std::string(dtype_name(dtype)) + " c " + std::to_string(c) + " rows " + std::to_string(rows) +
                       " affine " + std::to_string(affine));
          const SparseTensor ln = ops::layer_norm(x, {wa, ba, eps});
          const SparseTensor rn = ops::rms_norm(x, {wa, eps});
          EXPECT_EQ(ln.key(), x.key());
          EXPECT_EQ(rn.key(), x.key());
          EXPECT_EQ(bytes_of(x.feats()), before);
          const NormRef lr = ref_norm(true, v, c, w, b, eps);
          const NormRef rr = ref_norm(false, v, c, w, {}, eps);
          expect_rows(ln, lr.values, lr.magnitude, tolerance_for(dtype));
          expect_rows(rn, rr.values, rr.magnitude, tolerance_for(dtype));
        }
      }
    }
  }
}

TEST(Norms, ConstantRowGivesBias) {
  // Zero variance: (x - mean) is exactly 0, the output is the bias.
  const auto m = CoordinateManager::create();
  const SparseTensor x = make_tensor(m, {2.5, 2.5, 2.5, -1, -1, -1}, 3, DType::f32);
  const Array b = make_array({0.25, -0.5, 1}, Shape{3}, DType::f32);
  const SparseTensor y = ops::layer_norm(x, {std::nullopt, b});
  expect_rows(y, {0.25, -0.5, 1, 0.25, -0.5, 1}, std::vector<double>(6, 1.0), 0.0);
}

TEST(Norms, ErrorPaths) {
  const auto m = CoordinateManager::create();
  const SparseTensor x = make_tensor(m, {1, 2, 3, 4, 5, 6}, 3, DType::f32);
  expect_error<ValueError>([&] { ops::layer_norm(x, {Array::zeros(Shape{4}, DType::f32)}); },
                           {"[layer_norm]", "'weight'", "(3,)"});
  expect_error<TypeError>(
      [&] {
        ops::layer_norm(x, {std::nullopt, Array::zeros(Shape{3}, DType::f64)});
      },
      {"[layer_norm]", "'bias'", "float64"});
  expect_error<ValueError>(
      [&] {
        ops::layer_norm(x, {std::nullopt, std::nullopt, 0.0});
      },
      {"[layer_norm]", "'eps'", "positive"});
  expect_error<ValueError>([&] { ops::rms_norm(x, {std::nullopt, std::nan("")}); }, {"[rms_norm]", "'eps'", "nan"});
  expect_error<ValueError>(
      [&] {
        ops::rms_norm(x, {Array::zeros(Shape{3, 1}, DType::f32)});
      },
      {"[rms_norm]", "'weight'", "(3,)"});
  const SparseTensor no_channels =
      make_tensor(m, {}, 1, DType::f32, 2).replace_feats(Array::zeros(Shape{2, 0}, DType::f32));
  expect_error<ValueError>([&] { ops::rms_norm(no_channels); }, {"[rms_norm]", "'x'", "at least one channel"});
  expect_error<ValueError>([&] { ops::layer_norm(no_channels); }, {"[layer_norm]", "'x'", "at least one channel"});
  expect_error<ValueError>([&] { ops::layer_norm(SparseTensor()); }, {"[layer_norm]", "'x'", "undefined"});
}

}  // namespace
}  // namespace lattice::testing

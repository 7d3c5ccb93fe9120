// Feature ops (SPEC §7, Appendix A "Feature ops"): activations, batch norm,
// same-key add and channel cat, per element against plain float64
// references written here, for every feature dtype with the SPEC §12
// tolerances. Inputs carry capacity rows past the active ones, filled with
// garbage (1e30) that the ops must never read; outputs keep the input's
// identity, zero their capacity rows and leave their inputs untouched.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <numbers>
#include <source_location>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "lattice/ops/features.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

using Manager = std::shared_ptr<CoordinateManager>;
using ops::ActivationKind;

constexpr double k_garbage = 1e30;
constexpr ActivationKind k_all_kinds[] = {
    ActivationKind::relu, ActivationKind::leaky_relu, ActivationKind::gelu, ActivationKind::gelu_tanh,
    ActivationKind::silu, ActivationKind::sigmoid,    ActivationKind::tanh, ActivationKind::softplus};
constexpr int k_channel_counts[] = {1, 3, 33};
constexpr std::int64_t k_row_counts[] = {0, 1, 2, 100};

std::string kind_name(ActivationKind k) {
  switch (k) {
    case ActivationKind::relu:
      return "relu";
    case ActivationKind::leaky_relu:
      return "leaky_relu";
    case ActivationKind::gelu:
      return "gelu";
    case ActivationKind::gelu_tanh:
      return "gelu_tanh";
    case ActivationKind::silu:
      return "silu";
    case ActivationKind::sigmoid:
      return "sigmoid";
    case ActivationKind::tanh:
      return "tanh";
    case ActivationKind::softplus:
      return "softplus";
  }
  return "?";
}

// Unique coordinates for `capacity` rows (three batch items).
Array unique_coords(std::int64_t capacity) {
  std::vector<Coord> coords;
  for (std::int64_t i = 0; i < capacity; ++i) {
    const int v = static_cast<int>(i);
    coords.push_back({v % 3, v, -2 * v, v % 5});
  }
  return coords_array(coords);
}

// A tensor with rows(active) = values.size() / channels and `extra` capacity
// rows holding k_garbage.
SparseTensor make_tensor(const Manager& m, const std::vector<double>& values, int channels, DType dtype,
                         std::int64_t extra = 3) {
  const auto rows = static_cast<std::int64_t>(values.size()) / channels;
  const std::int64_t capacity = rows + extra;
  std::vector<double> all = values;
  all.resize(static_cast<std::size_t>(capacity * channels), k_garbage);
  return SparseTensor::from_coords(unique_coords(capacity), make_array(all, Shape{capacity, channels}, dtype),
                                   {.manager = m, .active_rows = rows});
}

std::vector<double> uniform_values(Rng& rng, std::size_t n, double lo, double hi) {
  std::vector<double> v(n);
  for (double& x : v) x = rng.uniform(lo, hi);
  return v;
}

// The active rows' features as doubles (the values the op really sees).
std::vector<double> active_values(const SparseTensor& x) { return to_doubles(x.feats().rows(0, x.rows())); }

// Capacity rows of an output are zero.
void expect_zero_capacity_rows(const SparseTensor& y, std::source_location loc = std::source_location::current()) {
  const ::testing::ScopedTrace trace(loc.file_name(), static_cast<int>(loc.line()), "capacity rows");
  const std::vector<double> tail = to_doubles(y.feats().rows(y.rows(), y.capacity()));
  for (std::size_t i = 0; i < tail.size(); ++i) {
    ASSERT_EQ(tail[i], 0.0) << "capacity element " << i << " of " << tail.size();
  }
}

class FeaturesDtype : public ::testing::TestWithParam<DType> {};
std::string dtype_param_name(const ::testing::TestParamInfo<DType>& info) {
  return std::string(dtype_name(info.param));
}

// ---------------------------------------------------------------------------
// activations

double ref_activation(ActivationKind kind, double v, double slope) {
  switch (kind) {
    case ActivationKind::relu:
      return v > 0 ? v : 0.0;
    case ActivationKind::leaky_relu:
      return v > 0 ? v : slope * v;
    case ActivationKind::gelu:
      return 0.5 * v * (1.0 + std::erf(v / std::numbers::sqrt2));
    case ActivationKind::gelu_tanh: {
      const double k = std::sqrt(2.0 / std::numbers::pi);
      return 0.5 * v * (1.0 + std::tanh(k * (v + 0.044715 * v * v * v)));
    }
    case ActivationKind::silu:
      return v / (1.0 + std::exp(-v));
    case ActivationKind::sigmoid:
      return 1.0 / (1.0 + std::exp(-v));
    case ActivationKind::tanh:
      return std::tanh(v);
    case ActivationKind::softplus:
      return v > 20.0 ? v : std::log1p(std::exp(v));
  }
  return v;
}

class FeaturesActivation : public FeaturesDtype {};

TEST_P(FeaturesActivation, EveryKindMatchesFloat64Reference) {
  const DType dtype = GetParam();
  auto m = CoordinateManager::create();
  Rng rng(17);
  for (int channels : k_channel_counts) {
    for (std::int64_t rows : k_row_counts) {
      std::vector<double> values = uniform_values(rng, static_cast<std::size_t>(rows * channels), -8, 8);
      // Points of interest: zero, both sides of the softplus threshold, saturation.
      const double specials[] = {0.0, -0.5, 19.5, 20.0, 20.5, 25.0, -25.0, 3.0, -3.0};
      for (std::size_t i = 0; i < std::size(specials) && i < values.size(); ++i) values[i] = specials[i];
      const SparseTensor x = make_tensor(m, values, channels, dtype);
      const std::vector<double> xin = active_values(x);
      const std::vector<unsigned char> before = bytes_of(x.feats());
      for (ActivationKind kind : k_all_kinds) {
        for (double slope : {0.01, 0.2}) {
          if (slope != 0.01 && kind != ActivationKind::leaky_relu) continue;
          SCOPED_TRACE(kind_name(kind) + " slope " + std::to_string(slope) + " C=" + std::to_string(channels) +
                       " rows=" + std::to_string(rows) + " " + std::string(dtype_name(dtype)));
          const SparseTensor y = ops::activation(x, {kind, slope});
          ASSERT_EQ(y.rows(), rows);
          ASSERT_EQ(y.capacity(), x.capacity());
          ASSERT_EQ(y.channels(), channels);
          EXPECT_EQ(y.dtype(), dtype);
          EXPECT_EQ(y.key(), x.key()) << "activations keep the coordinate identity";
          EXPECT_FALSE(y.feats().shares_buffer_with(x.feats()));
          std::vector<double> expect(xin.size()), magnitude(xin.size());
          for (std::size_t i = 0; i < xin.size(); ++i) {
            expect[i] = ref_activation(kind, xin[i], slope);
            magnitude[i] = std::abs(xin[i]) + std::abs(expect[i]);
          }
          const std::string report = compare_elements(active_values(y), expect, magnitude, tolerance_for(dtype),
                                                      static_cast<std::size_t>(channels));
          EXPECT_TRUE(report.empty()) << report;
          expect_zero_capacity_rows(y);
          EXPECT_EQ(bytes_of(x.feats()), before) << "the input was modified";
        }
      }
    }
  }
}

TEST_P(FeaturesActivation, ReluIsActivationRelu) {
  const DType dtype = GetParam();
  auto m = CoordinateManager::create();
  Rng rng(18);
  const SparseTensor x = make_tensor(m, uniform_values(rng, 3 * 50, -2, 2), 3, dtype);
  const std::vector<unsigned char> before = bytes_of(x.feats());
  const SparseTensor y = ops::relu(x);
  EXPECT_EQ(bytes_of(y.feats()), bytes_of(ops::activation(x, {ActivationKind::relu}).feats()));
  EXPECT_EQ(y.key(), x.key());
  const std::vector<double> xin = active_values(x), got = active_values(y);
  for (std::size_t i = 0; i < xin.size(); ++i) EXPECT_EQ(got[i], xin[i] > 0 ? xin[i] : 0.0) << i;
  expect_zero_capacity_rows(y);
  EXPECT_EQ(bytes_of(x.feats()), before);
}

INSTANTIATE_TEST_SUITE_P(Features, FeaturesActivation,
                         ::testing::Values(DType::f32, DType::f16, DType::bf16, DType::f64), dtype_param_name);

TEST(FeaturesActivationRules, LeakySlopeDefaultsTo001) {
  EXPECT_EQ(ops::ActivationParams{}.kind, ActivationKind::relu);
  EXPECT_EQ(ops::ActivationParams{.kind = ActivationKind::leaky_relu}.negative_slope, 0.01);
  auto m = CoordinateManager::create();
  const SparseTensor x = make_tensor(m, {-2.0, -0.5, 0.0, 3.0}, 1, DType::f64);
  const std::vector<double> got = active_values(ops::activation(x, {.kind = ActivationKind::leaky_relu}));
  EXPECT_DOUBLE_EQ(got[0], -0.02);
  EXPECT_DOUBLE_EQ(got[1], -0.005);
  EXPECT_EQ(got[2], 0.0);
  EXPECT_EQ(got[3], 3.0);
  const std::vector<double> custom = active_values(ops::activation(x, {ActivationKind::leaky_relu, 0.25}));
  EXPECT_DOUBLE_EQ(custom[0], -0.5);
  EXPECT_EQ(custom[3], 3.0);
}

TEST(FeaturesActivationRules, GeluIsExactErfByDefaultTanhOnRequest) {
  auto m = CoordinateManager::create();
  const std::vector<double> v{-3.0, -1.5, -0.75, 0.5, 1.5, 2.5};
  for (DType dtype : {DType::f64, DType::f32}) {
    SCOPED_TRACE(dtype_name(dtype));
    const SparseTensor x = make_tensor(m, v, 1, dtype);
    const std::vector<double> xin = active_values(x);
    const std::vector<double> erf_out = active_values(ops::activation(x, {ActivationKind::gelu}));
    const std::vector<double> tanh_out = active_values(ops::activation(x, {ActivationKind::gelu_tanh}));
    const double tol = tolerance_for(dtype);
    for (std::size_t i = 0; i < v.size(); ++i) {
      const double exact = ref_activation(ActivationKind::gelu, xin[i], 0);
      const double approx = ref_activation(ActivationKind::gelu_tanh, xin[i], 0);
      const double bound_exact = tol * (std::abs(xin[i]) + std::abs(exact));
      const double bound_approx = tol * (std::abs(xin[i]) + std::abs(approx));
      EXPECT_NEAR(erf_out[i], exact, bound_exact) << "gelu(" << xin[i] << ")";
      EXPECT_NEAR(tanh_out[i], approx, bound_approx) << "gelu_tanh(" << xin[i] << ")";
      // The formulas differ by more than the tolerance at every point, so the
      // checks above tell them apart.
      ASSERT_GT(std::abs(exact - approx), std::max(bound_exact, bound_approx)) << xin[i];
    }
  }
}

TEST(FeaturesActivationRules, SoftplusBetaOneThreshold20) {
  auto m = CoordinateManager::create();
  // float64: beyond the threshold the input is returned exactly; at or below
  // it log1p(exp(v)), which differs from v by 2e-9 at 20 (visible in float64).
  const SparseTensor x = make_tensor(m, {19.5, 20.0, 20.5, 30.0, 100.0, 1000.0, -30.0, 1.0}, 1, DType::f64);
  const std::vector<double> got = active_values(ops::activation(x, {ActivationKind::softplus}));
  EXPECT_NEAR(got[0], std::log1p(std::exp(19.5)), 1e-12 * 19.5);
  EXPECT_GT(got[0], 19.5);
  EXPECT_NEAR(got[1], std::log1p(std::exp(20.0)), 1e-12 * 20);
  EXPECT_GT(got[1], 20.0) << "20 is not above the threshold";
  EXPECT_EQ(got[2], 20.5);
  EXPECT_EQ(got[3], 30.0);
  EXPECT_EQ(got[4], 100.0);
  EXPECT_EQ(got[5], 1000.0);
  EXPECT_NEAR(got[6], std::exp(-30.0), 1e-12 * std::exp(-30.0));
  EXPECT_NEAR(got[7], std::log1p(std::exp(1.0)), 1e-12);  // beta 1: log(1 + e)
  // float32/float16: exp(100) overflows, the threshold keeps the result finite.
  for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const SparseTensor xf = make_tensor(m, {100.0, 96.0, 2.0}, 1, dtype);
    const std::vector<double> out = active_values(ops::activation(xf, {ActivationKind::softplus}));
    EXPECT_EQ(out[0], 100.0);
    EXPECT_EQ(out[1], 96.0);
    EXPECT_NEAR(out[2], std::log1p(std::exp(2.0)), tolerance_for(dtype) * 4.2);
  }
}

TEST(FeaturesActivationRules, Errors) {
  auto m = CoordinateManager::create();
  const SparseTensor x = make_tensor(m, {1.0, -1.0}, 1, DType::f32);
  expect_error<ValueError>([&] { ops::activation(SparseTensor(), {}); }, {"[activation]", "'x'", "undefined"});
  expect_error<ValueError>([&] { ops::relu(SparseTensor()); }, {"[activation]", "'x'", "undefined"});
  expect_error<TypeError>(
      [&] {
        ops::activation(x.replace_feats(Array::zeros(Shape{x.capacity(), 1}, DType::i32)), {});
      },
      {"[activation]", "'x'", "int32"});
  expect_error<ValueError>([&] { ops::activation(x, {static_cast<ActivationKind>(99)}); },
                           {"[activation]", "'kind'", "99"});
  expect_error<ValueError>(
      [&] {
        ops::activation(x, {ActivationKind::leaky_relu, std::numeric_limits<double>::quiet_NaN()});
      },
      {"[activation]", "'negative_slope'", "nan"});
  expect_error<ValueError>(
      [&] {
        ops::activation(x, {ActivationKind::leaky_relu, std::numeric_limits<double>::infinity()});
      },
      {"[activation]", "'negative_slope'", "inf"});
}

// ---------------------------------------------------------------------------
// batch norm

struct BnReference {
  std::vector<double> y, magnitude, running_mean, running_var, running_magnitude_mean, running_magnitude_var;
};

// Straightforward float64 batch norm over `rows` rows of `x` (row-major, C channels).
BnReference ref_batch_norm(const std::vector<double>& x, std::int64_t rows, int c, const std::vector<double>& gamma,
                           const std::vector<double>& beta, const std::vector<double>& rm,
                           const std::vector<double>& rv, bool training, double momentum, double eps) {
  BnReference r;
  const auto cs = static_cast<std::size_t>(c);
  std::vector<double> mean(cs), var(cs);
  r.running_mean = rm;
  r.running_var = rv;
  r.running_magnitude_mean.assign(cs, 0);
  r.running_magnitude_var.assign(cs, 0);
  for (std::size_t j = 0; j < cs; ++j) {
    if (training) {
      double sum = 0;
      for (std::int64_t i = 0; i < rows; ++i) sum += x[static_cast<std::size_t>(i) * cs + j];
      const double mu = sum / static_cast<double>(rows);
      double sq = 0;
      for (std::int64_t i = 0; i < rows; ++i) {
        const double d = x[static_cast<std::size_t>(i) * cs + j] - mu;
        sq += d * d;
      }
      mean[j] = mu;
      var[j] = sq / static_cast<double>(rows);  // biased: normalisation
      const double unbiased = sq / static_cast<double>(rows - 1);
      r.running_mean[j] = (1 - momentum) * rm[j] + momentum * mu;
      r.running_var[j] = (1 - momentum) * rv[j] + momentum * unbiased;
      r.running_magnitude_mean[j] = std::abs((1 - momentum) * rm[j]) + std::abs(momentum * mu);
      r.running_magnitude_var[j] = std::abs((1 - momentum) * rv[j]) + std::abs(momentum * unbiased);
    } else {
      mean[j] = rm[j];
      var[j] = rv[j];
    }
  }
  r.y.resize(static_cast<std::size_t>(rows) * cs);
  r.magnitude.resize(r.y.size());
  for (std::int64_t i = 0; i < rows; ++i) {
    for (std::size_t j = 0; j < cs; ++j) {
      const std::size_t e = static_cast<std::size_t>(i) * cs + j;
      const double inv = 1.0 / std::sqrt(var[j] + eps);
      r.y[e] = (x[e] - mean[j]) * inv * gamma[j] + beta[j];
      r.magnitude[e] = (std::abs(x[e]) + std::abs(mean[j])) * inv * std::abs(gamma[j]) + std::abs(beta[j]);
    }
  }
  return r;
}

struct BnInputs {
  SparseTensor x;
  Array gamma, beta, running_mean, running_var;
};

// Per-channel offsets and spreads so that every channel has its own statistics.
BnInputs make_bn_inputs(const Manager& m, Rng& rng, std::int64_t rows, int c, DType dtype) {
  std::vector<double> offset(static_cast<std::size_t>(c)), spread(static_cast<std::size_t>(c));
  for (int j = 0; j < c; ++j) {
    offset[static_cast<std::size_t>(j)] = rng.uniform(-5, 5);
    spread[static_cast<std::size_t>(j)] = rng.uniform(0.2, 3);
  }
  std::vector<double> values(static_cast<std::size_t>(rows * c));
  for (std::size_t e = 0; e < values.size(); ++e) {
    const std::size_t j = e % static_cast<std::size_t>(c);
    values[e] = offset[j] + spread[j] * rng.uniform(-1, 1);
  }
  BnInputs in;
  in.x = make_tensor(m, values, c, dtype);
  const auto n = static_cast<std::size_t>(c);
  in.gamma = make_array(uniform_values(rng, n, 0.5, 2.0), Shape{c}, dtype);
  in.beta = make_array(uniform_values(rng, n, -1.0, 1.0), Shape{c}, dtype);
  in.running_mean = make_array(uniform_values(rng, n, -1.0, 1.0), Shape{c}, DType::f32);
  in.running_var = make_array(uniform_values(rng, n, 0.5, 2.0), Shape{c}, DType::f32);
  return in;
}

class FeaturesBatchNorm : public FeaturesDtype {};

TEST_P(FeaturesBatchNorm, TrainingUsesActiveRowBatchStatistics) {
  const DType dtype = GetParam();
  auto m = CoordinateManager::create();
  Rng rng(31);
  for (int c : k_channel_counts) {
    for (std::int64_t rows : {2, 3, 100}) {
      SCOPED_TRACE("C=" + std::to_string(c) + " rows=" + std::to_string(rows) + " " + std::string(dtype_name(dtype)));
      const BnInputs in = make_bn_inputs(m, rng, rows, c, dtype);
      const std::vector<unsigned char> x_before = bytes_of(in.x.feats()), g_before = bytes_of(in.gamma),
                                       b_before = bytes_of(in.beta), rm_before = bytes_of(in.running_mean),
                                       rv_before = bytes_of(in.running_var);
      const ops::BatchNormResult res =
          ops::batch_norm(in.x, {in.gamma, in.beta, in.running_mean, in.running_var, /*training=*/true, 0.1, 1e-5});
      const BnReference ref = ref_batch_norm(active_values(in.x), rows, c, to_doubles(in.gamma), to_doubles(in.beta),
                                             to_doubles(in.running_mean), to_doubles(in.running_var), true, 0.1, 1e-5);
      const SparseTensor& y = res.output;
      ASSERT_EQ(y.rows(), rows);
      EXPECT_EQ(y.key(), in.x.key());
      EXPECT_EQ(y.dtype(), dtype);
      const std::string report =
          compare_elements(active_values(y), ref.y, ref.magnitude, tolerance_for(dtype), static_cast<std::size_t>(c));
      EXPECT_TRUE(report.empty()) << "output\n" << report;
      expect_zero_capacity_rows(y);
      // Running statistics: momentum 0.1 and the unbiased variance, stored as float32.
      ASSERT_EQ(res.running_mean.dtype(), DType::f32);
      ASSERT_EQ(res.running_var.dtype(), DType::f32);
      const std::string rm_report =
          compare_elements(to_doubles(res.running_mean), ref.running_mean, ref.running_magnitude_mean,
                           tolerance_for(DType::f32), static_cast<std::size_t>(c));
      EXPECT_TRUE(rm_report.empty()) << "running_mean\n" << rm_report;
      const std::string rv_report =
          compare_elements(to_doubles(res.running_var), ref.running_var, ref.running_magnitude_var,
                           tolerance_for(DType::f32), static_cast<std::size_t>(c));
      EXPECT_TRUE(rv_report.empty()) << "running_var\n" << rv_report;
      // Nothing the caller passed in changed; the running stats are new arrays.
      EXPECT_EQ(bytes_of(in.x.feats()), x_before);
      EXPECT_EQ(bytes_of(in.gamma), g_before);
      EXPECT_EQ(bytes_of(in.beta), b_before);
      EXPECT_EQ(bytes_of(in.running_mean), rm_before);
      EXPECT_EQ(bytes_of(in.running_var), rv_before);
      EXPECT_FALSE(res.running_mean.shares_buffer_with(in.running_mean));
      EXPECT_FALSE(res.running_var.shares_buffer_with(in.running_var));
    }
  }
}

TEST_P(FeaturesBatchNorm, EvalUsesRunningStatisticsUnchanged) {
  const DType dtype = GetParam();
  auto m = CoordinateManager::create();
  Rng rng(32);
  for (int c : k_channel_counts) {
    for (std::int64_t rows : k_row_counts) {
      SCOPED_TRACE("C=" + std::to_string(c) + " rows=" + std::to_string(rows) + " " + std::string(dtype_name(dtype)));
      const BnInputs in = make_bn_inputs(m, rng, rows, c, dtype);
      const std::vector<unsigned char> x_before = bytes_of(in.x.feats()), rm_before = bytes_of(in.running_mean),
                                       rv_before = bytes_of(in.running_var);
      const ops::BatchNormResult res = ops::batch_norm(in.x, {.weight = in.gamma,
                                                              .bias = in.beta,
                                                              .running_mean = in.running_mean,
                                                              .running_var = in.running_var,
                                                              .training = false});
      const BnReference ref = ref_batch_norm(active_values(in.x), rows, c, to_doubles(in.gamma), to_doubles(in.beta),
                                             to_doubles(in.running_mean), to_doubles(in.running_var), false, 0.1, 1e-5);
      ASSERT_EQ(res.output.rows(), rows);
      EXPECT_EQ(res.output.key(), in.x.key());
      const std::string report = compare_elements(active_values(res.output), ref.y, ref.magnitude, tolerance_for(dtype),
                                                  static_cast<std::size_t>(c));
      EXPECT_TRUE(report.empty()) << report;
      expect_zero_capacity_rows(res.output);
      EXPECT_EQ(bytes_of(res.running_mean), rm_before) << "eval mode returns the running statistics unchanged";
      EXPECT_EQ(bytes_of(res.running_var), rv_before);
      EXPECT_EQ(bytes_of(in.running_mean), rm_before);
      EXPECT_EQ(bytes_of(in.running_var), rv_before);
      EXPECT_EQ(bytes_of(in.x.feats()), x_before);
    }
  }
}

TEST_P(FeaturesBatchNorm, GammaBetaDefaultToOneAndZero) {
  const DType dtype = GetParam();
  auto m = CoordinateManager::create();
  Rng rng(33);
  const int c = 3;
  const BnInputs in = make_bn_inputs(m, rng, 40, c, dtype);
  const std::vector<double> ones(c, 1.0), zeros(c, 0.0);
  for (const bool training : {true, false}) {
    SCOPED_TRACE(training ? "training" : "eval");
    const ops::BatchNormResult res =
        ops::batch_norm(in.x, {.running_mean = in.running_mean, .running_var = in.running_var, .training = training});
    const BnReference ref = ref_batch_norm(active_values(in.x), 40, c, ones, zeros, to_doubles(in.running_mean),
                                           to_doubles(in.running_var), training, 0.1, 1e-5);
    const std::string report =
        compare_elements(active_values(res.output), ref.y, ref.magnitude, tolerance_for(dtype), c);
    EXPECT_TRUE(report.empty()) << report;
  }
}

TEST_P(FeaturesBatchNorm, CustomEpsAndMomentum) {
  const DType dtype = GetParam();
  auto m = CoordinateManager::create();
  Rng rng(34);
  const int c = 33;
  const BnInputs in = make_bn_inputs(m, rng, 7, c, dtype);
  for (const bool training : {true, false}) {
    SCOPED_TRACE(training ? "training" : "eval");
    const ops::BatchNormResult res = ops::batch_norm(
        in.x, {in.gamma, in.beta, in.running_mean, in.running_var, training, /*momentum=*/0.35, /*eps=*/0.5});
    const BnReference ref =
        ref_batch_norm(active_values(in.x), 7, c, to_doubles(in.gamma), to_doubles(in.beta),
                       to_doubles(in.running_mean), to_doubles(in.running_var), training, 0.35, 0.5);
    const std::string report =
        compare_elements(active_values(res.output), ref.y, ref.magnitude, tolerance_for(dtype), c);
    EXPECT_TRUE(report.empty()) << report;
    const std::string rv_report =
        compare_elements(to_doubles(res.running_var), ref.running_var,
                         training ? ref.running_magnitude_var : ref.running_var, tolerance_for(DType::f32), c);
    EXPECT_TRUE(rv_report.empty()) << rv_report;
  }
}

INSTANTIATE_TEST_SUITE_P(Features, FeaturesBatchNorm,
                         ::testing::Values(DType::f32, DType::f16, DType::bf16, DType::f64), dtype_param_name);

TEST(FeaturesBatchNormRules, Defaults) {
  const ops::BatchNormArgs args{};
  EXPECT_EQ(args.momentum, 0.1);
  EXPECT_EQ(args.eps, 1e-5);
  EXPECT_FALSE(args.training);
}

TEST(FeaturesBatchNormRules, BiasedVarianceNormalisesUnbiasedVarianceUpdates) {
  // Two rows {1, 3}: mean 2, biased variance 1, unbiased variance 2.
  auto m = CoordinateManager::create();
  for (DType dtype : {DType::f64, DType::f32}) {
    SCOPED_TRACE(dtype_name(dtype));
    const SparseTensor x = make_tensor(m, {1.0, 3.0}, 1, dtype, /*extra=*/5);
    const ops::BatchNormResult res = ops::batch_norm(x, {.running_mean = Array::zeros(Shape{1}, DType::f32),
                                                         .running_var = Array::full(Shape{1}, DType::f32, 1.0),
                                                         .training = true});
    const std::vector<double> y = active_values(res.output);
    const double inv = 1.0 / std::sqrt(1.0 + 1e-5);
    EXPECT_NEAR(y[0], -inv, 1e-6);
    EXPECT_NEAR(y[1], inv, 1e-6);
    EXPECT_NEAR(to_doubles(res.running_mean)[0], 0.2, 1e-7);          // 0.9 * 0 + 0.1 * 2
    EXPECT_NEAR(to_doubles(res.running_var)[0], 1.1, 1e-7);           // 0.9 * 1 + 0.1 * 2 (unbiased)
    EXPECT_GT(std::abs(to_doubles(res.running_var)[0] - 1.0), 0.05);  // not the biased 0.9 * 1 + 0.1 * 1
  }
}

TEST(FeaturesBatchNormRules, CapacityRowsAreIgnored) {
  // The same active rows with and without garbage capacity rows give the same
  // result, bit for bit (the garbage would dominate any statistic it entered).
  auto m = CoordinateManager::create();
  Rng rng(35);
  for (DType dtype : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const std::vector<double> values = uniform_values(rng, 4 * 3, -2, 2);
    const SparseTensor tight = make_tensor(m, values, 3, dtype, /*extra=*/0);
    const SparseTensor loose = make_tensor(m, values, 3, dtype, /*extra=*/40);
    ASSERT_EQ(loose.rows(), 4);
    ASSERT_EQ(loose.capacity(), 44);
    const ops::BatchNormArgs args{.running_mean = Array::zeros(Shape{3}, DType::f32),
                                  .running_var = Array::full(Shape{3}, DType::f32, 1.0),
                                  .training = true};
    const ops::BatchNormResult a = ops::batch_norm(tight, args);
    const ops::BatchNormResult b = ops::batch_norm(loose, args);
    EXPECT_EQ(bytes_of(b.output.feats().rows(0, 4)), bytes_of(a.output.feats()));
    EXPECT_EQ(bytes_of(b.running_mean), bytes_of(a.running_mean));
    EXPECT_EQ(bytes_of(b.running_var), bytes_of(a.running_var));
    for (double v : to_doubles(b.running_var)) EXPECT_LT(v, 10.0);
    expect_zero_capacity_rows(b.output);
  }
}

TEST(FeaturesBatchNormRules, TrainingNeedsTwoActiveRows) {
  auto m = CoordinateManager::create();
  for (DType dtype : {DType::f32, DType::f16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const ops::BatchNormArgs args{.running_mean = Array::zeros(Shape{2}, DType::f32),
                                  .running_var = Array::full(Shape{2}, DType::f32, 1.0),
                                  .training = true};
    const SparseTensor one = make_tensor(m, {1.0, 2.0}, 2, dtype);  // one active row, three capacity rows
    const SparseTensor none = make_tensor(m, {}, 2, dtype);         // no active rows
    const SparseTensor empty = make_tensor(m, {}, 2, dtype, /*extra=*/0);
    expect_error<ValueError>([&] { ops::batch_norm(one, args); }, {"[batch_norm]", "'x'", "got 1"});
    expect_error<ValueError>([&] { ops::batch_norm(none, args); }, {"[batch_norm]", "'x'", "got 0"});
    expect_error<ValueError>([&] { ops::batch_norm(empty, args); }, {"[batch_norm]", "'x'", "got 0"});
    // Eval mode is fine with any number of rows.
    ops::BatchNormArgs eval = args;
    eval.training = false;
    EXPECT_EQ(ops::batch_norm(one, eval).output.rows(), 1);
    EXPECT_EQ(ops::batch_norm(empty, eval).output.rows(), 0);
  }
}

TEST(FeaturesBatchNormRules, ArgumentErrors) {
  auto m = CoordinateManager::create();
  const SparseTensor x = make_tensor(m, {1.0, 2.0, 3.0, 4.0, 5.0, 6.0}, 3, DType::f32);
  const Array rm = Array::zeros(Shape{3}, DType::f32), rv = Array::full(Shape{3}, DType::f32, 1.0);
  expect_error<ValueError>([&] { ops::batch_norm(SparseTensor(), {.running_mean = rm, .running_var = rv}); },
                           {"[batch_norm]", "'x'", "undefined"});
  expect_error<ValueError>([&] { ops::batch_norm(x, {.running_var = rv}); },
                           {"[batch_norm]", "'running_mean'", "undefined"});
  expect_error<ValueError>([&] { ops::batch_norm(x, {.running_mean = rm}); },
                           {"[batch_norm]", "'running_var'", "undefined"});
  expect_error<ValueError>(
      [&] { ops::batch_norm(x, {.running_mean = Array::zeros(Shape{4}, DType::f32), .running_var = rv}); },
      {"[batch_norm]", "'running_mean'", "(3,)", "(4,)"});
  expect_error<ValueError>(
      [&] {
        ops::batch_norm(x, {.weight = Array::zeros(Shape{3, 1}, DType::f32), .running_mean = rm, .running_var = rv});
      },
      {"[batch_norm]", "'weight'", "(3, 1)"});
  expect_error<TypeError>(
      [&] { ops::batch_norm(x, {.bias = Array::zeros(Shape{3}, DType::f64), .running_mean = rm, .running_var = rv}); },
      {"[batch_norm]", "'bias'", "float64"});
  expect_error<ValueError>([&] { ops::batch_norm(x, {.running_mean = rm, .running_var = rv, .momentum = 1.5}); },
                           {"[batch_norm]", "'momentum'", "1.5"});
  expect_error<ValueError>([&] { ops::batch_norm(x, {.running_mean = rm, .running_var = rv, .eps = 0.0}); },
                           {"[batch_norm]", "'eps'", "got 0"});
  expect_error<ValueError>([&] { ops::batch_norm(x, {.running_mean = rm, .running_var = rv, .eps = -1e-5}); },
                           {"[batch_norm]", "'eps'", "-1e-05"});
}

// ---------------------------------------------------------------------------
// add and cat

class FeaturesAlgebra : public FeaturesDtype {};

TEST_P(FeaturesAlgebra, AddSameKeyMatchesReference) {
  const DType dtype = GetParam();
  auto m = CoordinateManager::create();
  Rng rng(41);
  for (int c : k_channel_counts) {
    for (std::int64_t rows : k_row_counts) {
      SCOPED_TRACE("C=" + std::to_string(c) + " rows=" + std::to_string(rows));
      const auto n = static_cast<std::size_t>(rows * c);
      const SparseTensor a = make_tensor(m, uniform_values(rng, n, -4, 4), c, dtype);
      std::vector<double> bvals = uniform_values(rng, n, -4, 4);
      bvals.resize(static_cast<std::size_t>(a.capacity() * c), -k_garbage);
      const SparseTensor b = a.replace_feats(make_array(bvals, Shape{a.capacity(), c}, dtype));
      const std::vector<unsigned char> a_before = bytes_of(a.feats()), b_before = bytes_of(b.feats());
      const SparseTensor y = ops::add(a, b);
      ASSERT_EQ(y.rows(), rows);
      EXPECT_EQ(y.key(), a.key());
      EXPECT_EQ(y.channels(), c);
      EXPECT_EQ(y.dtype(), dtype);
      const std::vector<double> av = active_values(a), bv = active_values(b);
      std::vector<double> expect(av.size()), magnitude(av.size());
      for (std::size_t i = 0; i < av.size(); ++i) {
        expect[i] = av[i] + bv[i];
        magnitude[i] = std::abs(av[i]) + std::abs(bv[i]);
      }
      const std::string report =
          compare_elements(active_values(y), expect, magnitude, tolerance_for(dtype), static_cast<std::size_t>(c));
      EXPECT_TRUE(report.empty()) << report;
      expect_zero_capacity_rows(y);
      EXPECT_EQ(bytes_of(a.feats()), a_before);
      EXPECT_EQ(bytes_of(b.feats()), b_before);
      // a + a is fine too (same buffer on both sides).
      const std::vector<double> twice = active_values(ops::add(a, a));
      for (std::size_t i = 0; i < av.size(); ++i)
        EXPECT_NEAR(twice[i], 2 * av[i], tolerance_for(dtype) * 2 * std::abs(av[i]));
    }
  }
}

TEST_P(FeaturesAlgebra, CatConcatenatesChannels) {
  const DType dtype = GetParam();
  auto m = CoordinateManager::create();
  Rng rng(42);
  const std::pair<int, int> pairs[] = {{1, 1}, {1, 3}, {3, 33}, {33, 1}};
  for (const auto& [ca, cb] : pairs) {
    for (std::int64_t rows : k_row_counts) {
      SCOPED_TRACE("Ca=" + std::to_string(ca) + " Cb=" + std::to_string(cb) + " rows=" + std::to_string(rows));
      const SparseTensor a = make_tensor(m, uniform_values(rng, static_cast<std::size_t>(rows * ca), -4, 4), ca, dtype);
      std::vector<double> bvals = uniform_values(rng, static_cast<std::size_t>(rows * cb), -4, 4);
      bvals.resize(static_cast<std::size_t>(a.capacity() * cb), k_garbage);
      const SparseTensor b = a.replace_feats(make_array(bvals, Shape{a.capacity(), cb}, dtype));
      const std::vector<unsigned char> a_before = bytes_of(a.feats()), b_before = bytes_of(b.feats());
      const SparseTensor y = ops::cat(a, b);
      ASSERT_EQ(y.rows(), rows);
      ASSERT_EQ(y.channels(), ca + cb);
      EXPECT_EQ(y.capacity(), a.capacity());
      EXPECT_EQ(y.key(), a.key());
      EXPECT_EQ(y.dtype(), dtype);
      const std::vector<double> av = active_values(a), bv = active_values(b), got = active_values(y);
      std::vector<double> expect;
      for (std::int64_t r = 0; r < rows; ++r) {
        const auto ra = static_cast<std::size_t>(r * ca), rb = static_cast<std::size_t>(r * cb);
        expect.insert(expect.end(), av.begin() + static_cast<std::ptrdiff_t>(ra),
                      av.begin() + static_cast<std::ptrdiff_t>(ra + static_cast<std::size_t>(ca)));
        expect.insert(expect.end(), bv.begin() + static_cast<std::ptrdiff_t>(rb),
                      bv.begin() + static_cast<std::ptrdiff_t>(rb + static_cast<std::size_t>(cb)));
      }
      EXPECT_EQ(got, expect) << "cat copies values exactly";
      expect_zero_capacity_rows(y);
      EXPECT_EQ(bytes_of(a.feats()), a_before);
      EXPECT_EQ(bytes_of(b.feats()), b_before);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Features, FeaturesAlgebra, ::testing::Values(DType::f32, DType::f16, DType::bf16, DType::f64),
                         dtype_param_name);

TEST(FeaturesAlgebraRules, AddAndCatNeedTheSameKeyAndDtype) {
  auto m = CoordinateManager::create();
  auto other = CoordinateManager::create();
  const std::vector<double> values{1, 2, 3, 4, 5, 6};
  const SparseTensor a = make_tensor(m, values, 3, DType::f32);
  // Equal coordinate values built separately get a different key (SPEC §2).
  const SparseTensor twin = make_tensor(m, values, 3, DType::f32);
  const SparseTensor foreign = make_tensor(other, values, 3, DType::f32);
  const SparseTensor half = a.replace_feats(a.feats().astype(DType::f16));
  const SparseTensor narrow = a.replace_feats(Array::zeros(Shape{a.capacity(), 2}, DType::f32));
  ASSERT_NE(twin.key(), a.key());
  for (const char* op : {"[add]", "[cat]"}) {
    SCOPED_TRACE(op);
    const bool is_add = std::string_view(op) == "[add]";
    const auto call = [&](const SparseTensor& l, const SparseTensor& r) {
      return is_add ? ops::add(l, r) : ops::cat(l, r);
    };
    expect_error<ValueError>([&] { call(a, twin); }, {op, "'b'", "coordinate key", twin.key().str(), a.key().str()});
    expect_error<ValueError>([&] { call(a, foreign); }, {op, "'b'", "coordinate key", foreign.key().str()});
    expect_error<TypeError>([&] { call(a, half); }, {op, "'b'", "float16", "float32"});
    expect_error<TypeError>([&] { call(half, a); }, {op, "'b'", "float32", "float16"});
    expect_error<ValueError>([&] { call(SparseTensor(), a); }, {op, "'a'", "undefined"});
    expect_error<ValueError>([&] { call(a, SparseTensor()); }, {op, "'b'", "undefined"});
    expect_error<TypeError>(
        [&] {
          call(a, a.replace_feats(Array::zeros(Shape{a.capacity(), 3}, DType::i32)));
        },
        {op, "'b'", "int32"});
  }
  // add also needs equal channel counts; cat does not.
  expect_error<ValueError>([&] { ops::add(a, narrow); }, {"[add]", "'b'", "2 channels", "3"});
  EXPECT_EQ(ops::cat(a, narrow).channels(), 5);
}

// ---------------------------------------------------------------------------
// the empty tensor

TEST(FeaturesEmpty, ZeroRowTensor) {
  auto m = CoordinateManager::create();
  for (DType dtype : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    SCOPED_TRACE(dtype_name(dtype));
    const SparseTensor x = make_tensor(m, {}, 4, dtype, /*extra=*/0);
    ASSERT_EQ(x.rows(), 0);
    ASSERT_EQ(x.capacity(), 0);
    for (ActivationKind kind : k_all_kinds) {
      const SparseTensor y = ops::activation(x, {kind});
      EXPECT_EQ(y.rows(), 0);
      EXPECT_EQ(y.feats().shape(), (Shape{0, 4}));
      EXPECT_EQ(y.key(), x.key());
    }
    const SparseTensor s = ops::add(x, x);
    EXPECT_EQ(s.rows(), 0);
    EXPECT_EQ(s.feats().shape(), (Shape{0, 4}));
    const SparseTensor c = ops::cat(x, x.replace_feats(Array::zeros(Shape{0, 2}, dtype)));
    EXPECT_EQ(c.rows(), 0);
    EXPECT_EQ(c.feats().shape(), (Shape{0, 6}));
    EXPECT_EQ(c.key(), x.key());
    const ops::BatchNormResult bn = ops::batch_norm(
        x, {.running_mean = Array::zeros(Shape{4}, DType::f32), .running_var = Array::full(Shape{4}, DType::f32, 1)});
    EXPECT_EQ(bn.output.rows(), 0);
    expect_error<ValueError>(
        [&] {
          ops::batch_norm(x, {.running_mean = Array::zeros(Shape{4}, DType::f32),
                              .running_var = Array::full(Shape{4}, DType::f32, 1),
                              .training = true});
        },
        {"[batch_norm]", "'x'", "got 0"});
  }
}

}  // namespace
}  // namespace lattice::testing

// Normalized convolutions (SPEC §5): Y = conv(X, W) / sqrt(conv(1, W^2) + eps) + b,
// per element against support/dense_reference's float64 dense convolution
// (numerator on X, denominator on an all-ones input with W^2), for the
// submanifold, transposed and generative kinds, with and without targets,
// both weight layouts, every feature dtype; identity and stride bookkeeping;
// error paths.
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "lattice/ops/conv.hpp"
#include "support/dense_reference.hpp"
#include "support/expect_error.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

Int3 int3(const I3& v) { return Int3{v[0], v[1], v[2]}; }

enum class Kind { subm, transposed, generative };

struct NcCase {
  Kind kind;
  I3 size, stride, in_stride;
  bool target, dense_layout, bias;
  DType dtype;
};

std::string name(const NcCase& c) {
  const char* k = c.kind == Kind::subm ? "subm" : c.kind == Kind::transposed ? "transposed" : "generative";
  return std::string(k) + "_k" + std::to_string(c.size[0]) + std::to_string(c.size[1]) + std::to_string(c.size[2]) +
         "_s" + std::to_string(c.stride[0]) + "_in" + std::to_string(c.in_stride[0]) + (c.target ? "_target" : "") +
         (c.dense_layout ? "_dense" : "_kmajor") + (c.bias ? "_bias_" : "_") + std::string(dtype_name(c.dtype));
}

// Kernel-major (K, C_in, C_out) -> dense (C_out, Kx, Ky, Kz, C_in).
std::vector<double> to_dense(const std::vector<double>& km, const I3& size, int cin, int cout) {
  std::vector<double> out(km.size());
  const int k_total = size[0] * size[1] * size[2];
  for (int k = 0; k < k_total; ++k)
    for (int i = 0; i < cin; ++i)
      for (int o = 0; o < cout; ++o)
        out[static_cast<std::size_t>((o * k_total + k) * cin + i)] =
            km[static_cast<std::size_t>((k * cin + i) * cout + o)];
  return out;
}

class NormalizedConv : public ::testing::TestWithParam<NcCase> {};

TEST_P(NormalizedConv, MatchesDenseReference) {
  const NcCase c = GetParam();
  Rng rng(std::hash<std::string>{}(name(c)));
  const auto m = CoordinateManager::create();
  const int cin = 3, cout = 4;
  const auto coords = random_coords(rng, 2, -4, 4, c.in_stride, 0.25);
  const auto n = static_cast<std::int64_t>(coords.size());
  const Array feats = make_array(random_values(rng, static_cast<std::size_t>(n * cin)), Shape{n, cin}, c.dtype);
  const auto fv = to_doubles(feats);
  const SparseTensor x =
      SparseTensor::from_coords(coords_array(coords), feats, {.stride = int3(c.in_stride), .manager = m});
  const int k_total = c.size[0] * c.size[1] * c.size[2];
  const Array wk = make_array(random_values(rng, static_cast<std::size_t>(k_total * cin * cout)),
                              Shape{k_total, cin, cout}, c.dtype);
  const auto wv = to_doubles(wk);
  const Array weight = c.dense_layout ? make_array(to_dense(wv, c.size, cin, cout),
                                                   Shape{cout, c.size[0], c.size[1], c.size[2], cin}, c.dtype)
                                      : wk;
  std::vector<double> bv;
  std::optional<Array> bias;
  if (c.bias) {
    const Array b = make_array(random_values(rng, cout), Shape{cout}, c.dtype);
    bv = to_doubles(b);
    bias = b;
  }
  const double eps = 1e-3;
  const auto before = bytes_of(x.feats());

  RefKind rk = RefKind::submanifold;
  RefSpec spec{c.size, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}};
  I3 out_stride = c.in_stride;
  std::vector<Coord> target;
  SparseTensor y;
  if (c.kind == Kind::subm) {
    y = ops::normalized_subm_conv3d(x, weight, bias, {.kernel_size = int3(c.size), .eps = eps});
  } else {
    spec.stride = c.stride;
    for (int a = 0; a < 3; ++a) out_stride[static_cast<std::size_t>(a)] = c.in_stride[a] / c.stride[a];
    if (c.target) target = random_coords(rng, 2, -8, 8, out_stride, 0.1);
    rk = c.target ? RefKind::target_transposed : c.kind == Kind::transposed ? RefKind::transposed : RefKind::generative;
    if (c.kind == Kind::transposed) {
      ops::NormalizedConvTranspose3dParams p{.kernel_size = int3(c.size), .stride = int3(c.stride), .eps = eps};
      if (c.target) p.coordinates = coords_array(target);
      y = ops::normalized_conv_transpose3d(x, weight, bias, p);
    } else {
      ops::NormalizedGenerativeConvTranspose3dParams p{
          .kernel_size = int3(c.size), .stride = int3(c.stride), .eps = eps};
      if (c.target) p.coordinates = coords_array(target);
      y = ops::normalized_generative_conv_transpose3d(x, weight, bias, p);
    }
  }
  EXPECT_EQ(bytes_of(x.feats()), before);
  EXPECT_EQ(y.stride(), int3(out_stride));
  if (c.kind == Kind::subm) EXPECT_EQ(y.key(), x.key());
  const auto support =
      c.kind == Kind::subm ? coords : ref_support(rk, coords, c.in_stride, spec, c.target ? &target : nullptr);
  ASSERT_EQ(coords_from_array(y.coords(), y.rows()), support);

  const RefConvResult num = ref_conv(rk, coords, c.in_stride, fv, cin, wv, cout, {}, spec, support, out_stride);
  std::vector<double> w2(wv.size());
  for (std::size_t i = 0; i < wv.size(); ++i) w2[i] = wv[i] * wv[i];
  const RefConvResult den = ref_conv(rk, coords, c.in_stride, std::vector<double>(fv.size(), 1.0), cin, w2, cout, {},
                                     spec, support, out_stride);
  std::vector<double> expect(num.values.size()), mag(expect.size());
  int unreached = 0;
  for (std::size_t i = 0; i < expect.size(); ++i) {
    const double b = c.bias ? bv[i % static_cast<std::size_t>(cout)] : 0.0;
    const double inv = 1.0 / std::sqrt(den.values[i] + eps);
    expect[i] = num.values[i] * inv + b;
    mag[i] = num.magnitude[i] * inv + std::abs(b) + 1e-30;
    unreached += den.values[i] == 0.0;
  }
  if (c.target) EXPECT_GT(unreached, 0);
  const auto got = to_doubles(y.feats().rows(0, y.rows()));
  const std::string report = compare_elements(got, expect, mag, tolerance_for(c.dtype), cout);
  EXPECT_TRUE(report.empty()) << report;
}

std::vector<NcCase> cases() {
  std::vector<NcCase> out;
  const DType dtypes[] = {DType::f32, DType::f16, DType::f64, DType::bf16};
  int i = 0;
  auto add = [&](Kind k, I3 size, I3 stride, I3 in_stride, bool target) {
    out.push_back({k, size, stride, in_stride, target, i % 2 == 1, i % 3 != 2, dtypes[i % 4]});
    ++i;
  };
  add(Kind::subm, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, false);
  add(Kind::subm, {3, 1, 3}, {1, 1, 1}, {2, 2, 2}, false);
  add(Kind::subm, {5, 5, 5}, {1, 1, 1}, {1, 1, 1}, false);
  add(Kind::subm, {1, 1, 1}, {1, 1, 1}, {2, 2, 2}, false);
  add(Kind::transposed, {2, 2, 2}, {2, 2, 2}, {2, 2, 2}, false);
  add(Kind::transposed, {3, 3, 3}, {2, 2, 2}, {4, 4, 4}, false);
  add(Kind::transposed, {2, 2, 2}, {2, 2, 2}, {2, 2, 2}, true);
  add(Kind::transposed, {3, 3, 3}, {2, 2, 2}, {2, 2, 2}, true);
  add(Kind::generative, {2, 2, 2}, {2, 2, 2}, {2, 2, 2}, false);
  add(Kind::generative, {3, 3, 3}, {2, 2, 2}, {4, 4, 4}, false);
  add(Kind::generative, {2, 2, 2}, {2, 2, 2}, {2, 2, 2}, true);
  add(Kind::generative, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, false);
  return out;
}

INSTANTIATE_TEST_SUITE_P(Cases, NormalizedConv, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return name(info.param); });

TEST(NormalizedConvEdge, EmptyAndOneRow) {
  const auto m = CoordinateManager::create();
  const SparseTensor empty = SparseTensor::from_coords(Array::empty(Shape{0, 4}, DType::i32),
                                                       Array::empty(Shape{0, 2}, DType::f32), {.manager = m});
  const Array w = Array::full(Shape{27, 2, 3}, DType::f32, 0.5);
  EXPECT_EQ(ops::normalized_subm_conv3d(empty, w).rows(), 0);
  EXPECT_EQ(ops::normalized_generative_conv_transpose3d(
                SparseTensor::from_coords(Array::empty(Shape{0, 4}, DType::i32), Array::empty(Shape{0, 2}, DType::f32),
                                          {.stride = Int3{2}, .manager = m}),
                Array::full(Shape{8, 2, 3}, DType::f32, 0.5))
                .rows(),
            0);
  // One row: only the centre offset reaches it. num = sum_ci x_ci w_ci,co;
  // den = sum_ci w^2 = 2 * 0.25; y = num / sqrt(0.5 + eps) + b.
  const SparseTensor one =
      SparseTensor::from_coords(Array::from_vector(std::vector<std::int32_t>{3, -5, 100, -7}, Shape{1, 4}),
                                make_array({1, 2}, Shape{1, 2}, DType::f64), {.manager = m});
  const Array b = make_array({0.25, 0, -1}, Shape{3}, DType::f64);
  const SparseTensor y =
      ops::normalized_subm_conv3d(one, Array::full(Shape{27, 2, 3}, DType::f64, 0.5), b, {.eps = 0.0});
  const auto v = to_doubles(y.feats());
  for (int o = 0; o < 3; ++o) EXPECT_NEAR(v[o], 1.5 / std::sqrt(0.5) + to_doubles(b)[o], 1e-12);
}

TEST(NormalizedConvEdge, GenerativeWithoutRelationCache) {
  // With no relation cache, the two products build separate generative
  // supports (different keys): the denominator must be recomputed on the
  // numerator's support and the result must still match the one with a cache.
  for (std::size_t capacity : {std::size_t{0}, std::size_t{512}}) {
    const auto m = CoordinateManager::create();
    m->set_cache_capacity(capacity);
    Rng rng(77);
    const auto coords = random_coords(rng, 2, -3, 3, {2, 2, 2}, 0.3);
    const auto n = static_cast<std::int64_t>(coords.size());
    const Array f = make_array(random_values(rng, static_cast<std::size_t>(n * 2)), Shape{n, 2}, DType::f64);
    const SparseTensor x = SparseTensor::from_coords(coords_array(coords), f, {.stride = Int3{2}, .manager = m});
    const auto wv = random_values(rng, 8 * 2 * 3);
    const SparseTensor y = ops::normalized_generative_conv_transpose3d(x, make_array(wv, Shape{8, 2, 3}, DType::f64),
                                                                       std::nullopt, {.eps = 1e-6});
    const RefSpec spec{{2, 2, 2}, {2, 2, 2}, {0, 0, 0}, {1, 1, 1}};
    const auto support = ref_support(RefKind::generative, coords, {2, 2, 2}, spec, nullptr);
    ASSERT_EQ(coords_from_array(y.coords(), y.rows()), support);
    std::vector<double> w2(wv.size());
    for (std::size_t i = 0; i < wv.size(); ++i) w2[i] = wv[i] * wv[i];
    const auto num =
        ref_conv(RefKind::generative, coords, {2, 2, 2}, to_doubles(f), 2, wv, 3, {}, spec, support, {1, 1, 1});
    const auto den = ref_conv(RefKind::generative, coords, {2, 2, 2}, std::vector<double>(to_doubles(f).size(), 1.0), 2,
                              w2, 3, {}, spec, support, {1, 1, 1});
    std::vector<double> expect(num.values.size()), mag(expect.size());
    for (std::size_t i = 0; i < expect.size(); ++i) {
      expect[i] = num.values[i] / std::sqrt(den.values[i] + 1e-6);
      mag[i] = num.magnitude[i] / std::sqrt(den.values[i] + 1e-6) + 1e-30;
    }
    const std::string report =
        compare_elements(to_doubles(y.feats().rows(0, y.rows())), expect, mag, tolerance_for(DType::f64), 3);
    EXPECT_TRUE(report.empty()) << "cache capacity " << capacity << "\n" << report;
  }
}

TEST(NormalizedConvEdge, ErrorPaths) {
  const auto m = CoordinateManager::create();
  const SparseTensor x =
      SparseTensor::from_coords(Array::from_vector(std::vector<std::int32_t>{0, 2, 4, 6}, Shape{1, 4}),
                                make_array({1, 2}, Shape{1, 2}, DType::f32), {.stride = Int3{2}, .manager = m});
  const Array w27 = Array::zeros(Shape{27, 2, 3}, DType::f32);
  const Array w8 = Array::zeros(Shape{8, 2, 3}, DType::f32);
  expect_error<ValueError>(m, [&] { ops::normalized_subm_conv3d(x, w27, std::nullopt, {.kernel_size = Int3{2}}); },
                           {"[normalized_subm_conv3d]", "'kernel_size'", "odd"});
  expect_error<ValueError>(m, [&] { ops::normalized_subm_conv3d(x, w8); }, {"[normalized_subm_conv3d]", "'weight'"});
  expect_error<TypeError>(m,
                          [&] {
                            ops::normalized_subm_conv3d(x, Array::zeros(Shape{27, 2, 3}, DType::f64));
                          },
                          {"[normalized_subm_conv3d]", "'weight'", "float64"});
  expect_error<ValueError>(m,
                           [&] {
                             ops::normalized_subm_conv3d(x, Array::zeros(Shape{27, 5, 3}, DType::f32));
                           },
                           {"[normalized_subm_conv3d]", "'weight'", "C_in"});
  expect_error<ValueError>(m, [&] { ops::normalized_subm_conv3d(x, w27, Array::zeros(Shape{2}, DType::f32)); },
                           {"[normalized_subm_conv3d]", "'bias'"});
  expect_error<ValueError>(m, [&] { ops::normalized_subm_conv3d(x, w27, std::nullopt, {.eps = -1}); },
                           {"[normalized_subm_conv3d]", "'eps'"});
  expect_error<ValueError>(m, [&] { ops::normalized_subm_conv3d(x, w27, std::nullopt, {.eps = std::nan("")}); },
                           {"[normalized_subm_conv3d]", "'eps'"});
  expect_error<ValueError>(m, [&] { ops::normalized_conv_transpose3d(x, w8, std::nullopt, {.stride = Int3{4}}); },
                           {"[normalized_conv_transpose3d]", "stride"});
  expect_error<ValueError>(
      m, [&] { ops::normalized_generative_conv_transpose3d(x, w8, std::nullopt, {.stride = Int3{3}}); },
      {"[normalized_generative_conv_transpose3d]", "stride"});
  expect_error<ValueError>(m,
                           [&] {
                             ops::normalized_conv_transpose3d(
                                 x, w8, std::nullopt,
                                 {.coordinates = Array::from_vector(std::vector<std::int32_t>{0, 1, 2}, Shape{1, 3})});
                           },
                           {"[normalized_conv_transpose3d]", "'coordinates'"});
  const SparseTensor other =
      SparseTensor::from_coords(Array::from_vector(std::vector<std::int32_t>{0, 1, 4, 6}, Shape{1, 4}),
                                make_array({1}, Shape{1, 1}, DType::f32), {.manager = CoordinateManager::create()});
  expect_error<ValueError>(m, [&] { ops::normalized_conv_transpose3d(x, w8, std::nullopt, {.coordinates = other}); },
                           {"[normalized_conv_transpose3d]", "'coordinates'", "manager"});
  expect_error<ValueError>(m, [&] { ops::normalized_subm_conv3d(SparseTensor(), w27); },
                           {"[normalized_subm_conv3d]", "'x'"});
}

}  // namespace
}  // namespace lattice::testing

// devoxelize and voxelize_with_quantization against naive references written
// here from SPEC Appendix A: voxel L (logical, stride s) covers [L, L + 1) in
// u = (p - origin) / (s * voxel_size) (computed in the points' precision, as
// voxelize) and has its centre at L + 0.5; linear interpolates the 8 centres
// around u - 0.5 with trilinear weights renormalized over present corners.
#include <cmath>
#include <limits>
#include <map>

#include <gtest/gtest.h>

#include "lattice/io/point_cloud.hpp"
#include "lattice/ops/voxelize.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

struct Geometry {
  double voxel_size[3];
  double origin[3];
};

// u per axis in the points' precision P (no contraction, true division).
template <class P>
double cell_position(P p, const Geometry& g, int stride, int a) {
  volatile P diff = p - static_cast<P>(g.origin[a]);
  volatile P denom = static_cast<P>(stride) * static_cast<P>(g.voxel_size[a]);
  volatile P q = diff / denom;
  return static_cast<double>(q);
}

// Expected (N, C) values and magnitudes for devoxelize on (coords, feats).
template <class P>
void reference(const std::vector<Coord>& coords, const std::vector<double>& fv, int c, const I3& stride,
               const std::vector<P>& pts, const std::vector<int>& batch, const Geometry& g, bool linear,
               std::vector<double>& expect, std::vector<double>& mag) {
  std::map<Coord, int> rows;
  for (std::size_t r = 0; r < coords.size(); ++r) rows[coords[r]] = static_cast<int>(r);
  const std::size_t n = pts.size() / 3;
  expect.assign(n * static_cast<std::size_t>(c), 0.0);
  mag.assign(n * static_cast<std::size_t>(c), 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    const int b = batch.empty() ? 0 : batch[i];
    double u[3];
    for (int a = 0; a < 3; ++a)
      u[a] = cell_position(pts[3 * i + static_cast<std::size_t>(a)], g, stride[static_cast<std::size_t>(a)], a);
    auto find = [&](const double l[3]) {
      Coord key{b, 0, 0, 0};
      for (int a = 0; a < 3; ++a)
        key[static_cast<std::size_t>(a) + 1] = static_cast<int>(l[a]) * stride[static_cast<std::size_t>(a)];
      auto it = rows.find(key);
      return it == rows.end() ? -1 : it->second;
    };
    std::vector<std::pair<int, double>> terms;  // (row, weight)
    if (!linear) {
      const double l[3] = {std::floor(u[0]), std::floor(u[1]), std::floor(u[2])};
      terms.emplace_back(find(l), 1.0);
    } else {
      for (int dx = 0; dx < 2; ++dx)
        for (int dy = 0; dy < 2; ++dy)
          for (int dz = 0; dz < 2; ++dz) {
            const int d[3] = {dx, dy, dz};
            double l[3], w = 1;
            for (int a = 0; a < 3; ++a) {
              const double t = u[a] - 0.5;
              l[a] = std::floor(t) + d[a];
              w *= d[a] ? t - std::floor(t) : std::floor(t) + 1 - t;
            }
            terms.emplace_back(find(l), w);
          }
    }
    double total = 0;
    for (auto [r, w] : terms) total += r >= 0 ? w : 0.0;
    if (total <= 0) continue;
    for (int j = 0; j < c; ++j) {
      double e = 0, m = 0;
      for (auto [r, w] : terms) {
        if (r < 0) continue;
        const double x = fv[static_cast<std::size_t>(r * c + j)];
        e += w / total * x;
        m += w / total * std::abs(x);
      }
      expect[i * static_cast<std::size_t>(c) + static_cast<std::size_t>(j)] = e;
      mag[i * static_cast<std::size_t>(c) + static_cast<std::size_t>(j)] = m;
    }
  }
}

template <class P>
Array points_array(const std::vector<P>& pts) {
  return Array::from_vector(pts, Shape{static_cast<std::int64_t>(pts.size() / 3), 3});
}

// Random points around the tensor's coordinates (logical range [lo, hi]), with
// a quarter of them exactly on voxel boundaries and centres.
template <class P>
std::vector<P> random_points(Rng& rng, int n, int lo, int hi, const I3& s, const Geometry& g) {
  std::vector<P> pts(static_cast<std::size_t>(3 * n));
  for (int i = 0; i < n; ++i) {
    for (int a = 0; a < 3; ++a) {
      double u =
          rng.uniform(lo * s[static_cast<std::size_t>(a)] - 1.5, (hi + 1) * s[static_cast<std::size_t>(a)] + 1.5);
      if (i % 4 == 1) u = std::floor(u);        // on a voxel boundary
      if (i % 8 == 3) u = std::floor(u) + 0.5;  // on a unit centre
      pts[static_cast<std::size_t>(3 * i + a)] = static_cast<P>(g.origin[a] + u * g.voxel_size[a]);
    }
  }
  return pts;
}

ops::DevoxelizeParams params_of(const Geometry& g, bool linear) {
  return {.voxel_size = {g.voxel_size[0], g.voxel_size[1], g.voxel_size[2]},
          .origin = {g.origin[0], g.origin[1], g.origin[2]},
          .interpolation = linear ? ops::Interpolation::linear : ops::Interpolation::nearest};
}

// (feature dtype, points are float64, stride, batches, linear)
using Case = std::tuple<DType, bool, int, int, bool>;
class DevoxelizeRandom : public ::testing::TestWithParam<Case> {};

template <class P>
void run_case(const Case& param) {
  const auto [dtype, f64_points, stride, batches, linear] = param;
  Rng rng(static_cast<std::uint64_t>(static_cast<int>(dtype) * 1000 + f64_points * 100 + stride * 10 + batches +
                                     (linear ? 7 : 0)));
  const I3 s{stride, stride == 1 ? 1 : 2 * stride, stride};  // anisotropic when > 1
  const int lo = -4, hi = 3, c = 1 + static_cast<int>(rng.integer(0, 5));
  const auto coords = random_coords(rng, batches, lo, hi, s, 0.45);
  const auto fvals = random_values(rng, coords.size() * static_cast<std::size_t>(c));
  const Array feats = make_array(fvals, Shape{static_cast<std::int64_t>(coords.size()), c}, dtype);
  const SparseTensor x = SparseTensor::from_coords(coords_array(coords), feats, {.stride = Int3{s[0], s[1], s[2]}});
  const Geometry g{{0.1, 0.25, 0.05}, {0.3, -1.7, 0.0}};
  const int n = 1500;
  const auto pts = random_points<P>(rng, n, lo, hi, s, g);
  std::vector<int> batch(static_cast<std::size_t>(n));
  std::vector<std::int32_t> batch32(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i)
    batch32[static_cast<std::size_t>(i)] = batch[static_cast<std::size_t>(i)] =
        static_cast<int>(rng.integer(0, batches - 1));

  const Array points = points_array(pts);
  const Array bidx = Array::from_vector(batch32, Shape{n});
  const auto points_before = bytes_of(points);
  const auto feats_before = bytes_of(x.feats());
  const Array y = ops::devoxelize(x, points, params_of(g, linear), std::nullopt, bidx);
  ASSERT_EQ(y.shape(), (Shape{n, c}));
  ASSERT_EQ(y.dtype(), dtype);
  EXPECT_EQ(bytes_of(points), points_before);
  EXPECT_EQ(bytes_of(x.feats()), feats_before);

  std::vector<double> expect, mag;
  reference(coords, to_doubles(feats), c, s, pts, batch, g, linear, expect, mag);
  const double tol = std::max(tolerance_for(dtype), f64_points ? 1e-12 : 2e-6);
  const std::string report = compare_elements(to_doubles(y), expect, mag, tol, static_cast<std::size_t>(c));
  EXPECT_TRUE(report.empty()) << report;
  // Some points must hit and some miss, or the case proves little.
  int zeros = 0;
  for (std::size_t i = 0; i < static_cast<std::size_t>(n); ++i) zeros += mag[i * static_cast<std::size_t>(c)] == 0;
  EXPECT_GT(zeros, 0);
  EXPECT_LT(zeros, n);
}

TEST_P(DevoxelizeRandom, MatchesReference) {
  if (std::get<1>(GetParam())) {
    run_case<double>(GetParam());
  } else {
    run_case<float>(GetParam());
  }
}

INSTANTIATE_TEST_SUITE_P(All, DevoxelizeRandom,
                         ::testing::Combine(::testing::Values(DType::f32, DType::f16, DType::f64), ::testing::Bool(),
                                            ::testing::Values(1, 2, 4), ::testing::Values(1, 3), ::testing::Bool()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           const Case& c = info.param;
                           return std::string(dtype_name(std::get<0>(c))) +
                                  (std::get<1>(c) ? "_points64" : "_points32") + "_stride" +
                                  std::to_string(std::get<2>(c)) + "_batches" + std::to_string(std::get<3>(c)) +
                                  (std::get<4>(c) ? "_linear" : "_nearest");
                         });

TEST(Devoxelize, HandWorkedLinearWeights) {
  // Two voxels at logical x = 0 and 1 (centres 0.5 and 1.5 at voxel_size 1):
  // a point at x = 0.75 takes 0.75 of the first and 0.25 of the second; the
  // missing corners (y, z neighbours) are renormalized away.
  const SparseTensor x = SparseTensor::from_coords(coords_array({{0, 0, 0, 0}, {0, 1, 0, 0}}),
                                                   Array::from_vector(std::vector<float>{4, 8}, Shape{2, 1}));
  const Array pts = Array::from_vector(std::vector<float>{0.75f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 5, 5, 5}, Shape{3, 3});
  const auto y = ops::devoxelize(x, pts, {.voxel_size = 1.0}).to_vector<float>();
  EXPECT_FLOAT_EQ(y[0], 0.75f * 4 + 0.25f * 8);
  EXPECT_FLOAT_EQ(y[1], 4.0f);  // exactly on a centre
  EXPECT_EQ(y[2], 0.0f);        // no corner present
  const auto yn =
      ops::devoxelize(x, pts, {.voxel_size = 1.0, .interpolation = ops::Interpolation::nearest}).to_vector<float>();
  EXPECT_EQ(yn, (std::vector<float>{4, 4, 0}));
}

TEST(Devoxelize, NegativeLargeCoordsAndZeroWeightCorner) {
  // Large negative logical coordinates near the key limit; a point exactly at
  // an absent voxel's centre whose present neighbours weigh 0 gets 0.
  const int big = -131072;
  const SparseTensor x = SparseTensor::from_coords(coords_array({{2, big, 0, 0}, {2, big + 2, 0, 0}}),
                                                   Array::from_vector(std::vector<double>{1, 3}, Shape{2, 1}));
  const std::vector<double> p{big + 0.5, 0.5, 0.5, big + 1.5, 0.5, 0.5, big + 1.0, 0.5, 0.5};
  const Array b = Array::from_vector(std::vector<std::int32_t>{2, 2, 2}, Shape{3});
  const auto y =
      ops::devoxelize(x, Array::from_vector(p, Shape{3, 3}), {.voxel_size = 1.0}, std::nullopt, b).to_vector<double>();
  EXPECT_EQ(y[0], 1.0);
  EXPECT_EQ(y[1], 0.0);
  EXPECT_EQ(y[2], 1.0);  // half-way between centre big+0.5 (present) and big+1.5 (absent)
  // Batch 0 holds nothing.
  const auto y0 = ops::devoxelize(x, Array::from_vector(p, Shape{3, 3}), {.voxel_size = 1.0}).to_vector<double>();
  EXPECT_EQ(y0, (std::vector<double>{0, 0, 0}));
}

TEST(Devoxelize, EmptyPointsEmptyTensorAndOneRow) {
  const SparseTensor one = SparseTensor::from_coords(coords_array({{0, 3, -2, 1}}),
                                                     Array::from_vector(std::vector<float>{2, -1}, Shape{1, 2}));
  EXPECT_EQ(ops::devoxelize(one, Array::empty(Shape{0, 3}, DType::f32), {.voxel_size = 0.5}).shape(), (Shape{0, 2}));
  const Array p = Array::from_vector(std::vector<float>{1.7f, -0.8f, 0.6f}, Shape{1, 3});
  EXPECT_EQ(
      ops::devoxelize(one, p, {.voxel_size = 0.5, .interpolation = ops::Interpolation::nearest}).to_vector<float>(),
      (std::vector<float>{2, -1}));
  EXPECT_EQ(ops::devoxelize(one, p, {.voxel_size = 0.5}).to_vector<float>(), (std::vector<float>{2, -1}));
  const SparseTensor empty =
      SparseTensor::from_coords(Array::empty(Shape{0, 4}, DType::i32), Array::empty(Shape{0, 3}, DType::f32));
  EXPECT_EQ(ops::devoxelize(empty, p, {.voxel_size = 0.5}).to_vector<float>(), (std::vector<float>{0, 0, 0}));
}

template <class P>
void round_trip(int stride, DType dtype) {
  Rng rng(static_cast<std::uint64_t>(stride * 31 + static_cast<int>(dtype)));
  const int n = 3000, c = 4;
  std::vector<P> pts(static_cast<std::size_t>(3 * n));
  for (auto& v : pts) v = static_cast<P>(rng.uniform(-3.0, 3.0));
  for (int i = 0; i < 600; ++i) pts[static_cast<std::size_t>(i)] = static_cast<P>(rng.integer(-30, 30)) * P(0.1);
  std::vector<std::int32_t> batch(static_cast<std::size_t>(n));
  for (auto& b : batch) b = static_cast<std::int32_t>(rng.integer(0, 2));
  const Array points = points_array(pts), bidx = Array::from_vector(batch, Shape{n});
  const Array feats = make_array(random_values(rng, static_cast<std::size_t>(n * c)), Shape{n, c}, dtype);
  const ops::Voxelized v = ops::voxelize(points, feats, {.voxel_size = 0.1, .origin = 0.05, .stride = stride}, bidx);
  const ops::DevoxelizeParams dp{.voxel_size = 0.1, .origin = 0.05, .interpolation = ops::Interpolation::nearest};
  const auto y = to_doubles(ops::devoxelize(v.tensor, points, dp, std::nullopt, bidx));
  const auto y_map = to_doubles(ops::devoxelize(v.tensor, points, dp, v.inverse_rows, bidx));
  const auto vf = to_doubles(v.tensor.feats());
  const auto inv = v.inverse_rows.to_vector<std::int32_t>();
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < c; ++j) {
      const double want = vf[static_cast<std::size_t>(inv[static_cast<std::size_t>(i)] * c + j)];
      ASSERT_EQ(y[static_cast<std::size_t>(i * c + j)], want) << "point " << i;
      ASSERT_EQ(y_map[static_cast<std::size_t>(i * c + j)], want) << "point " << i;
    }
}

TEST(Devoxelize, RoundTripNearestGivesEachPointItsVoxel) {
  for (int s : {1, 2, 4}) {
    round_trip<float>(s, DType::f32);
    round_trip<double>(s, DType::f16);
  }
}

TEST(Devoxelize, MapWithAbsentEntries) {
  const SparseTensor x = SparseTensor::from_coords(coords_array({{0, 0, 0, 0}, {0, 1, 0, 0}}),
                                                   Array::from_vector(std::vector<float>{4, 8}, Shape{2, 1}));
  const Array pts = Array::zeros(Shape{3, 3}, DType::f32);
  const Array map = Array::from_vector(std::vector<std::int32_t>{1, -1, 0}, Shape{3});
  EXPECT_EQ(ops::devoxelize(x, pts, {.voxel_size = 1.0, .interpolation = ops::Interpolation::nearest}, map)
                .to_vector<float>(),
            (std::vector<float>{8, 0, 4}));
}

TEST(Devoxelize, CapacityRowsAreNotVoxels) {
  // Rows past active_rows are unused capacity: points there read 0, and the
  // map may not name them.
  const SparseTensor x =
      SparseTensor::from_coords(coords_array({{0, 0, 0, 0}, {0, 1, 0, 0}, {0, 2, 0, 0}}),
                                Array::from_vector(std::vector<float>{4, 8, 99}, Shape{3, 1}), {.active_rows = 2});
  const Array pts = Array::from_vector(std::vector<float>{0.5f, 0.5f, 0.5f, 2.5f, 0.5f, 0.5f}, Shape{2, 3});
  const ops::DevoxelizeParams nearest{.voxel_size = 1.0, .interpolation = ops::Interpolation::nearest};
  EXPECT_EQ(ops::devoxelize(x, pts, nearest).to_vector<float>(), (std::vector<float>{4, 0}));
  EXPECT_EQ(ops::devoxelize(x, pts, {.voxel_size = 1.0}).to_vector<float>(), (std::vector<float>{4, 0}));  // not 99
  expect_error<ValueError>(
      [&] {
        ops::devoxelize(x, pts, nearest, Array::from_vector(std::vector<std::int32_t>{0, 2}, Shape{2}));
      },
      {"[devoxelize]", "'point_voxel_map'", "entry 1", "is 2", "x has 2 rows"});
}

TEST(Devoxelize, Errors) {
  const SparseTensor x = SparseTensor::from_coords(coords_array({{0, 0, 0, 0}, {0, 1, 0, 0}}),
                                                   Array::from_vector(std::vector<float>{4, 8}, Shape{2, 1}));
  const Array pts = Array::zeros(Shape{2, 3}, DType::f32);
  const ops::DevoxelizeParams ok{.voxel_size = 0.1};
  const ops::DevoxelizeParams nearest{.voxel_size = 0.1, .interpolation = ops::Interpolation::nearest};
  auto expect = [&](auto&& fn, std::initializer_list<std::string_view> frags) {
    expect_error<ValueError>(x.manager(), fn, frags);
  };
  expect_error<ValueError>([&] { ops::devoxelize(SparseTensor(), pts, ok); }, {"[devoxelize]", "'x'"});
  expect([&] { ops::devoxelize(x, Array(), ok); }, {"[devoxelize]", "'points'", "undefined"});
  expect_error<TypeError>(
      [&] {
        ops::devoxelize(x, Array::zeros(Shape{2, 3}, DType::i32), ok);
      },
      {"[devoxelize]", "'points'", "int32"});
  expect([&] { ops::devoxelize(x, Array::zeros(Shape{2, 2}, DType::f32), ok); }, {"'points'", "(2, 2)"});
  expect([&] { ops::devoxelize(x, pts, {.voxel_size = 0.0}); }, {"'voxel_size'", "0"});
  expect([&] { ops::devoxelize(x, pts, {.voxel_size = {0.1, NAN, 0.1}}); }, {"'voxel_size'", "nan"});
  expect([&] { ops::devoxelize(x, pts, {.voxel_size = 0.1, .origin = INFINITY}); }, {"'origin'", "inf"});
  expect([&] { ops::devoxelize(x, pts, {.voxel_size = 0.1, .interpolation = static_cast<ops::Interpolation>(5)}); },
         {"'interpolation'", "5"});
  expect(
      [&] {
        ops::devoxelize(x, Array::from_vector(std::vector<float>{0, 0, 0, 1, NAN, 0}, Shape{2, 3}), ok);
      },
      {"'points'", "point 1", "non-finite", "axis y"});
  expect(
      [&] {
        ops::devoxelize(x, Array::from_vector(std::vector<double>{0, 0, -INFINITY}, Shape{1, 3}), ok);
      },
      {"'points'", "point 0", "non-finite"});
  const Array map_ok = Array::from_vector(std::vector<std::int32_t>{0, 1}, Shape{2});
  expect([&] { ops::devoxelize(x, pts, ok, map_ok); }, {"'point_voxel_map'", "nearest"});
  expect_error<TypeError>([&] { ops::devoxelize(x, pts, nearest, Array::zeros(Shape{2}, DType::i64)); },
                          {"'point_voxel_map'", "int64"});
  expect([&] { ops::devoxelize(x, pts, nearest, Array::zeros(Shape{3}, DType::i32)); },
         {"'point_voxel_map'", "(2,)", "(3,)"});
  expect(
      [&] {
        ops::devoxelize(x, pts, nearest, Array::from_vector(std::vector<std::int32_t>{0, 2}, Shape{2}));
      },
      {"'point_voxel_map'", "entry 1", "is 2"});
  expect(
      [&] {
        ops::devoxelize(x, pts, nearest, Array::from_vector(std::vector<std::int32_t>{-2, 0}, Shape{2}));
      },
      {"'point_voxel_map'", "entry 0", "is -2"});
  expect_error<TypeError>([&] { ops::devoxelize(x, pts, ok, std::nullopt, Array::zeros(Shape{2}, DType::f32)); },
                          {"'batch_indices'", "float32"});
  expect(
      [&] {
        ops::devoxelize(x, pts, ok, std::nullopt, Array::zeros(Shape{2, 1}, DType::i32));
      },
      {"'batch_indices'", "(2, 1)"});
  expect(
      [&] {
        ops::devoxelize(x, pts, ok, std::nullopt, Array::from_vector(std::vector<std::int32_t>{0, 1023}, Shape{2}));
      },
      {"'batch_indices'", "entry 1", "1023"});
  expect(
      [&] {
        ops::devoxelize(x, pts, ok, std::nullopt, Array::from_vector(std::vector<std::int32_t>{-1, 0}, Shape{2}));
      },
      {"'batch_indices'", "entry 0", "-1"});
}

// ---- voxelize_with_quantization ---------------------------------------------

TEST(VoxelizeWithQuantization, MatchesVoxelizeAndFirstPoints) {
  for (int stride : {1, 2}) {
    for (bool f64 : {false, true}) {
      Rng rng(static_cast<std::uint64_t>(stride * 2 + f64));
      const int n = 2500;
      std::vector<double> p(static_cast<std::size_t>(3 * n));
      for (auto& v : p) v = rng.uniform(-2.0, 2.0);
      for (int i = 0; i < 300; ++i) p[static_cast<std::size_t>(i)] = static_cast<double>(rng.integer(-20, 20)) * 0.1;
      std::vector<std::int32_t> batch(static_cast<std::size_t>(n));
      for (auto& b : batch) b = static_cast<std::int32_t>(rng.integer(0, 3));
      const Array points =
          f64 ? Array::from_vector(p, Shape{n, 3}) : Array::from_vector(p, Shape{n, 3}).astype(DType::f32);
      const Array bidx = Array::from_vector(batch, Shape{n});
      const ops::Quantized q =
          ops::voxelize_with_quantization(points, {.voxel_size = 0.1, .origin = -0.05, .stride = stride}, bidx);
      const ops::Voxelized v =
          ops::voxelize(points, std::nullopt, {.voxel_size = 0.1, .origin = -0.05, .stride = stride}, bidx);
      const std::int64_t m = v.tensor.rows();
      ASSERT_EQ(q.active_rows.item_int(), m);
      ASSERT_EQ(q.coords.shape(), (Shape{m, 4}));
      EXPECT_EQ(coords_from_array(q.coords, m), coords_from_array(v.tensor.coords(), m));
      EXPECT_EQ(q.inverse_rows.to_vector<std::int32_t>(), v.inverse_rows.to_vector<std::int32_t>());
      EXPECT_EQ(q.counts.to_vector<std::int32_t>(), v.counts.to_vector<std::int32_t>());
      // point_rows: the lowest point of each voxel, found by a plain scan.
      const auto inv = q.inverse_rows.to_vector<std::int32_t>();
      std::vector<std::int32_t> first(static_cast<std::size_t>(m), -1);
      for (int i = 0; i < n; ++i)
        if (first[static_cast<std::size_t>(inv[static_cast<std::size_t>(i)])] < 0)
          first[static_cast<std::size_t>(inv[static_cast<std::size_t>(i)])] = i;
      EXPECT_EQ(q.point_rows.to_vector<std::int32_t>(), first);
      // First-seen order: point_rows increase.
      for (std::size_t r = 1; r < first.size(); ++r) EXPECT_LT(first[r - 1], first[r]);
    }
  }
}

TEST(VoxelizeWithQuantization, EmptyOneAndErrors) {
  const ops::Quantized e = ops::voxelize_with_quantization(Array::empty(Shape{0, 3}, DType::f32), {.voxel_size = 1.0});
  EXPECT_EQ(e.active_rows.item_int(), 0);
  EXPECT_EQ(e.coords.shape(), (Shape{0, 4}));
  EXPECT_EQ(e.point_rows.numel(), 0);
  const ops::Quantized one = ops::voxelize_with_quantization(
      Array::from_vector(std::vector<float>{-1.5f, 2.5f, 0}, Shape{1, 3}), {.voxel_size = 1.0, .stride = 2});
  EXPECT_EQ(coords_from_array(one.coords, 1), (std::vector<Coord>{{0, -2, 2, 0}}));
  EXPECT_EQ(one.point_rows.to_vector<std::int32_t>(), (std::vector<std::int32_t>{0}));
  const Array pts = Array::zeros(Shape{2, 3}, DType::f32);
  expect_error<ValueError>([&] { ops::voxelize_with_quantization(pts, {.voxel_size = -1.0}); },
                           {"[voxelize_with_quantization]", "'voxel_size'"});
  expect_error<ValueError>([&] { ops::voxelize_with_quantization(pts, {.voxel_size = 1.0, .stride = 0}); },
                           {"[voxelize_with_quantization]", "'stride'"});
  expect_error<TypeError>(
      [&] {
        ops::voxelize_with_quantization(Array::zeros(Shape{2, 3}, DType::i32), {.voxel_size = 1.0});
      },
      {"[voxelize_with_quantization]", "'points'"});
  expect_error<ValueError>(
      [&] {
        ops::voxelize_with_quantization(pts, {.voxel_size = 1.0},
                                        Array::from_vector(std::vector<std::int32_t>{0, 5000}, Shape{2}));
      },
      {"[voxelize_with_quantization]", "'batch_indices'", "5000"});
  expect_error<ValueError>(
      [&] {
        ops::voxelize_with_quantization(Array::from_vector(std::vector<float>{0, NAN, 0}, Shape{1, 3}),
                                        {.voxel_size = 1.0});
      },
      {"[voxelize_with_quantization]", "'points'", "non-finite"});
}

// ---- the real scan ------------------------------------------------------------

TEST(Devoxelize, SemanticKittiScan) {
  LATTICE_REQUIRE_SHARED_FILE(path, "semantickitti/000000.bin");
  const io::PointCloud cloud = io::read_kitti_bin(path);
  ASSERT_EQ(cloud.size(), 123389);
  const std::int64_t n = cloud.size();
  const ops::Voxelized v = ops::voxelize(cloud.positions, cloud.positions, {.voxel_size = 0.05});
  ASSERT_EQ(v.tensor.rows(), 94444);
  const ops::DevoxelizeParams nearest{.voxel_size = 0.05, .interpolation = ops::Interpolation::nearest};
  const auto y = ops::devoxelize(v.tensor, cloud.positions, nearest).to_vector<float>();
  const auto vf = v.tensor.feats().to_vector<float>();
  const auto inv = v.inverse_rows.to_vector<std::int32_t>();
  for (std::int64_t i = 0; i < n; ++i)
    for (int j = 0; j < 3; ++j)
      ASSERT_EQ(y[static_cast<std::size_t>(3 * i + j)],
                vf[static_cast<std::size_t>(3 * inv[static_cast<std::size_t>(i)] + j)])
          << "point " << i;
  // linear against the reference over every point.
  const Array yl = ops::devoxelize(v.tensor, cloud.positions, {.voxel_size = 0.05});
  const auto pts = cloud.positions.to_vector<float>();
  std::vector<double> expect, mag;
  reference(coords_from_array(v.tensor.coords(), v.tensor.rows()), to_doubles(v.tensor.feats()), 3, I3{1, 1, 1}, pts,
            {}, Geometry{{0.05, 0.05, 0.05}, {0, 0, 0}}, true, expect, mag);
  const std::string report = compare_elements(to_doubles(yl), expect, mag, 2e-6, 3);
  EXPECT_TRUE(report.empty()) << report;
}

}  // namespace
}  // namespace lattice::testing

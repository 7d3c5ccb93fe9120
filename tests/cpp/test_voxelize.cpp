// voxelize against a std::map reference: cells, first-seen row order, the
// point->voxel map, counts, mean/sum/max reductions, batches, strides, errors,
// and the real SemanticKITTI scan (94,444 voxels at 0.05 m).
#include <cmath>
#include <limits>
#include <map>

#include <gtest/gtest.h>

#include "lattice/io/point_cloud.hpp"
#include "lattice/ops/voxelize.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

struct RefVoxels {
  std::vector<Coord> coords;
  std::vector<int> inverse;
  std::vector<int> counts;
};

// The SPEC rule, c = s * floor((p - origin) / (s * voxel_size)), in float32.
RefVoxels reference(const std::vector<float>& pts, const std::vector<int>& batch, float vs, float origin, int s) {
  RefVoxels r;
  std::map<Coord, int> rows;
  const float denom = static_cast<float>(s) * vs;
  for (std::size_t i = 0; i < pts.size() / 3; ++i) {
    Coord c{batch.empty() ? 0 : batch[i], 0, 0, 0};
    for (int a = 0; a < 3; ++a) {
      volatile float diff = pts[3 * i + static_cast<std::size_t>(a)] - origin;  // no contraction
      c[static_cast<std::size_t>(a) + 1] = static_cast<int>(std::floor(diff / denom)) * s;
    }
    auto [it, fresh] = rows.try_emplace(c, static_cast<int>(r.coords.size()));
    if (fresh) {
      r.coords.push_back(c);
      r.counts.push_back(0);
    }
    ++r.counts[static_cast<std::size_t>(it->second)];
    r.inverse.push_back(it->second);
  }
  return r;
}

class VoxelizeReductions : public ::testing::TestWithParam<std::tuple<ops::Reduction, DType, int>> {};

TEST_P(VoxelizeReductions, MatchReference) {
  const auto [reduction, dtype, stride] = GetParam();
  Rng rng(static_cast<std::uint64_t>(static_cast<int>(reduction) * 100 + static_cast<int>(dtype) * 10 + stride));
  const int n = 2000, c = 3;
  std::vector<float> pts(static_cast<std::size_t>(3 * n));
  for (float& p : pts) p = static_cast<float>(rng.uniform(-2.0, 2.0));
  // Points exactly on voxel boundaries (multiples of 0.1 in float32) are the hard case.
  for (int i = 0; i < 200; ++i) pts[static_cast<std::size_t>(i)] = static_cast<float>(rng.integer(-20, 20)) * 0.1f;
  std::vector<int> batch(static_cast<std::size_t>(n));
  std::vector<std::int32_t> batch32(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i)
    batch32[static_cast<std::size_t>(i)] = batch[static_cast<std::size_t>(i)] = static_cast<int>(rng.integer(0, 2));
  const auto feat_values = random_values(rng, static_cast<std::size_t>(n * c));
  const Array feats = make_array(feat_values, Shape{n, c}, dtype);
  const std::vector<double> fv = to_doubles(feats);

  const ops::Voxelized v = ops::voxelize(Array::from_vector(pts, Shape{n, 3}), feats,
                                         {.voxel_size = 0.1, .origin = 0.05, .reduction = reduction, .stride = stride},
                                         Array::from_vector(batch32, Shape{n}));
  const RefVoxels ref = reference(pts, batch, 0.1f, 0.05f, stride);
  ASSERT_EQ(coords_from_array(v.tensor.coords(), v.tensor.rows()), ref.coords);
  EXPECT_EQ(v.tensor.stride(), Int3{stride});
  const auto inverse = v.inverse_rows.to_vector<std::int32_t>();
  const auto counts = v.counts.to_vector<std::int32_t>();
  EXPECT_EQ(std::vector<int>(inverse.begin(), inverse.end()), ref.inverse);
  EXPECT_EQ(std::vector<int>(counts.begin(), counts.end()), ref.counts);

  const std::size_t m = ref.coords.size();
  std::vector<double> expect(m * c, reduction == ops::Reduction::max ? -INFINITY : 0.0), mag(m * c, 0.0);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < c; ++j) {
      const double x = fv[static_cast<std::size_t>(i * c + j)];
      double& e = expect[static_cast<std::size_t>(ref.inverse[static_cast<std::size_t>(i)] * c + j)];
      e = reduction == ops::Reduction::max ? std::max(e, x) : e + x;
      mag[static_cast<std::size_t>(ref.inverse[static_cast<std::size_t>(i)] * c + j)] += std::abs(x);
    }
  }
  for (std::size_t r = 0; r < m; ++r)
    for (int j = 0; j < c; ++j) {
      if (reduction == ops::Reduction::mean) {
        expect[r * c + static_cast<std::size_t>(j)] /= ref.counts[r];
        mag[r * c + static_cast<std::size_t>(j)] /= ref.counts[r];
      }
      if (reduction == ops::Reduction::max)
        mag[r * c + static_cast<std::size_t>(j)] = std::abs(expect[r * c + static_cast<std::size_t>(j)]);
    }
  const std::string report = compare_elements(to_doubles(v.tensor.feats()), expect, mag,
                                              std::max(tolerance_for(dtype), 1e-6), static_cast<std::size_t>(c));
  EXPECT_TRUE(report.empty()) << report;
  // batch_counts derived from the batch column.
  const auto bc = v.tensor.batch_counts()->to_vector<std::int32_t>();
  std::vector<std::int32_t> expect_bc(3, 0);
  for (const Coord& co : ref.coords) ++expect_bc[static_cast<std::size_t>(co[0])];
  EXPECT_EQ(bc, expect_bc);
}

INSTANTIATE_TEST_SUITE_P(
    All, VoxelizeReductions,
    ::testing::Combine(::testing::Values(ops::Reduction::mean, ops::Reduction::sum, ops::Reduction::max),
                       ::testing::Values(DType::f32, DType::f16, DType::f64), ::testing::Values(1, 2)));

TEST(Voxelize, NoFeaturesAndDoublePoints) {
  const std::vector<double> pts{0.0, 0.0, 0.0, 0.09, 0.0, 0.0, -0.01, 0.0, 0.0};
  const ops::Voxelized v = ops::voxelize(Array::from_vector(pts, Shape{3, 3}), std::nullopt, {.voxel_size = 0.1});
  EXPECT_EQ(v.tensor.channels(), 0);
  EXPECT_EQ(coords_from_array(v.tensor.coords(), v.tensor.rows()), (std::vector<Coord>{{0, 0, 0, 0}, {0, -1, 0, 0}}));
  EXPECT_EQ(v.inverse_rows.to_vector<std::int32_t>(), (std::vector<std::int32_t>{0, 0, 1}));
}

TEST(Voxelize, EmptyInput) {
  const ops::Voxelized v =
      ops::voxelize(Array::empty(Shape{0, 3}, DType::f32), Array::empty(Shape{0, 2}, DType::f32), {.voxel_size = 0.05});
  EXPECT_EQ(v.tensor.rows(), 0);
  EXPECT_EQ(v.tensor.channels(), 2);
  EXPECT_EQ(v.inverse_rows.numel(), 0);
}

TEST(Voxelize, Errors) {
  const Array pts = Array::zeros(Shape{2, 3}, DType::f32);
  auto expect = [](auto&& fn, const char* arg) {
    try {
      fn();
      ADD_FAILURE() << "expected an error for " << arg;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("[voxelize] argument '") + arg + "'"), std::string::npos)
          << e.what();
    }
  };
  expect([&] { ops::voxelize(pts, std::nullopt, {.voxel_size = 0.0}); }, "voxel_size");
  expect([&] { ops::voxelize(pts, std::nullopt, {.voxel_size = -1}); }, "voxel_size");
  expect([&] { ops::voxelize(pts, std::nullopt, {.voxel_size = std::numeric_limits<double>::infinity()}); },
         "voxel_size");
  expect([&] { ops::voxelize(pts, std::nullopt, {.voxel_size = std::nan("")}); }, "voxel_size");
  expect([&] { ops::voxelize(pts, std::nullopt, {.voxel_size = 0.1, .origin = std::nan("")}); }, "origin");
  expect([&] { ops::voxelize(pts, std::nullopt, {.voxel_size = 0.1, .stride = 0}); }, "stride");
  expect([&] { ops::voxelize(Array::zeros(Shape{2, 3}, DType::i32), std::nullopt, {.voxel_size = 0.1}); }, "points");
  expect([&] { ops::voxelize(Array::zeros(Shape{2, 4}, DType::f32), std::nullopt, {.voxel_size = 0.1}); }, "points");
  expect([&] { ops::voxelize(pts, Array::zeros(Shape{3, 1}, DType::f32), {.voxel_size = 0.1}); }, "feats");
  expect([&] { ops::voxelize(pts, Array::zeros(Shape{2, 1}, DType::i32), {.voxel_size = 0.1}); }, "feats");
  expect([&] { ops::voxelize(pts, std::nullopt, {.voxel_size = 0.1}, Array::zeros(Shape{2}, DType::i64)); },
         "batch_indices");
  expect(
      [&] {
        ops::voxelize(pts, std::nullopt, {.voxel_size = 0.1},
                      Array::from_vector(std::vector<std::int32_t>{0, 1023}, Shape{2}));
      },
      "batch_indices");
  expect(
      [&] {
        ops::voxelize(Array::from_vector(std::vector<float>{0, 0, 0, 1, NAN, 0}, Shape{2, 3}), std::nullopt,
                      {.voxel_size = 0.1});
      },
      "points");
  expect(
      [&] {
        ops::voxelize(Array::from_vector(std::vector<float>{0, 0, 0, 1e6f, 0, 0}, Shape{2, 3}), std::nullopt,
                      {.voxel_size = 0.001});
      },
      "points");
  expect([&] { ops::voxelize(pts, std::nullopt, {.voxel_size = 0.1, .reduction = static_cast<ops::Reduction>(9)}); },
         "reduction");
}

TEST(Voxelize, SemanticKittiScanGives94444Voxels) {
  LATTICE_REQUIRE_SHARED_FILE(path, "semantickitti/000000.bin");
  const io::PointCloud cloud = io::read_kitti_bin(path);
  ASSERT_EQ(cloud.size(), 123389);
  const ops::Voxelized v = ops::voxelize(cloud.positions, std::nullopt, {.voxel_size = 0.05});
  EXPECT_EQ(v.tensor.rows(), 94444);
  const auto counts = v.counts.to_vector<std::int32_t>();
  std::int64_t total = 0;
  for (std::int32_t k : counts) total += k;
  EXPECT_EQ(total, 123389);
}

}  // namespace
}  // namespace lattice::testing

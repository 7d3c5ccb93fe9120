// The realistic chain on the real SemanticKITTI scan (support/chain.hpp):
// voxelize -> subm conv -> max pool -> transposed conv onto the original
// support -> devoxelize to every point. Checks the counts against the known
// values for this scan, the pooled support against an independent
// computation, and float32 against float64 over the whole chain.
#include <unordered_set>

#include <gtest/gtest.h>

#include "support/chain.hpp"

namespace lattice::testing {
namespace {

std::uint64_t pack(std::int32_t b, std::int32_t x, std::int32_t y, std::int32_t z) {
  auto u = [](std::int32_t v) {
    return static_cast<std::uint64_t>(static_cast<std::uint32_t>(v + (1 << 20))) & 0x1FFFFF;
  };
  return (static_cast<std::uint64_t>(b) << 63) ^ (u(x) << 42) ^ (u(y) << 21) ^ u(z);
}

TEST(Chain, SemanticKittiVoxelizeConvPoolTransposeDevoxelize) {
  LATTICE_REQUIRE_SHARED_FILE(path, "semantickitti/000000.bin");
  const io::PointCloud cloud = io::read_kitti_bin(path);
  const ChainResult f64 = run_chain(cloud, Device::cpu(), DType::f64);
  const ChainResult f32 = run_chain(cloud, Device::cpu(), DType::f32);

  // Counts of this scan at 0.05 m (PERF.md: 94,444 voxels; 68,643 at stride 2).
  EXPECT_EQ(f64.points, 123389);
  EXPECT_EQ(f64.voxels, 94444);
  EXPECT_EQ(f64.pooled, 68643);
  EXPECT_EQ(f64.upsampled_rows, f64.voxels);
  EXPECT_TRUE(f64.upsampled_on_voxel_key);
  ASSERT_EQ(f64.linear.shape(), (Shape{123389, 8}));
  ASSERT_EQ(f64.nearest.shape(), (Shape{123389, 8}));

  // Pooled support = unique(floor(v / 2) * 2) of the voxels, first seen.
  const std::int32_t* v = f64.voxel_coords.data<std::int32_t>();
  std::unordered_set<std::uint64_t> seen;
  std::vector<std::int32_t> expect;
  auto down = [](std::int32_t c) { return (c >= 0 ? c / 2 : (c - 1) / 2) * 2; };
  for (std::int64_t r = 0; r < f64.voxels; ++r) {
    const std::int32_t c[4] = {v[4 * r], down(v[4 * r + 1]), down(v[4 * r + 2]), down(v[4 * r + 3])};
    if (seen.insert(pack(c[0], c[1], c[2], c[3])).second) expect.insert(expect.end(), c, c + 4);
  }
  ASSERT_EQ(static_cast<std::int64_t>(expect.size()), 4 * f64.pooled);
  const std::int32_t* pc = f64.pooled_coords.data<std::int32_t>();
  for (std::size_t i = 0; i < expect.size(); ++i) ASSERT_EQ(pc[i], expect[i]) << "pooled coordinate entry " << i;

  // nearest = the features of the voxel each point fell into.
  const std::int32_t* inv = f64.inverse_rows.data<std::int32_t>();
  const double* up = f64.upsampled.data<double>();
  const double* near = f64.nearest.data<double>();
  const double* lin = f64.linear.data<double>();
  std::vector<double> lo(8, 1e300), hi(8, -1e300);
  for (std::int64_t r = 0; r < f64.voxels; ++r) {
    for (int c = 0; c < 8; ++c) {
      lo[c] = std::min(lo[c], up[8 * r + c]);
      hi[c] = std::max(hi[c], up[8 * r + c]);
    }
  }
  for (std::int64_t i = 0; i < f64.points; ++i) {
    for (int c = 0; c < 8; ++c) {
      ASSERT_EQ(near[8 * i + c], up[8 * inv[i] + c]) << "point " << i << " channel " << c;
      // Linear interpolation is a convex combination of voxel rows.
      ASSERT_GE(lin[8 * i + c], lo[c] - 1e-9) << "point " << i;
      ASSERT_LE(lin[8 * i + c], hi[c] + 1e-9) << "point " << i;
    }
  }

  // float32 agrees with float64 through the whole chain.
  EXPECT_EQ(f32.voxels, f64.voxels);
  EXPECT_EQ(f32.pooled, f64.pooled);
  EXPECT_LT(relative_max_error(f32.upsampled, f64.upsampled), 1e-4);
  EXPECT_LT(relative_max_error(f32.linear, f64.linear), 1e-4);
  EXPECT_LT(relative_max_error(f32.nearest, f64.nearest), 1e-4);
}

}  // namespace
}  // namespace lattice::testing

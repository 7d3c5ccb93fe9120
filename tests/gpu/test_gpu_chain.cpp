// The realistic chain (tests/cpp/support/chain.hpp) on CUDA against the CPU:
// identical supports and point -> voxel map, features within tolerance of the
// CPU's float64 run, bitwise identical from run to run.
#include "gpu_harness.hpp"
#include "support/chain.hpp"

namespace lattice::testing::gpu {
namespace {

class GpuChain : public GpuTest {};

void expect_same_ints(const Array& a, const Array& b, const char* what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  const std::int32_t* x = a.data<std::int32_t>();
  const std::int32_t* y = b.data<std::int32_t>();
  for (std::int64_t i = 0; i < a.numel(); ++i) ASSERT_EQ(x[i], y[i]) << what << " entry " << i;
}

TEST_F(GpuChain, SemanticKittiMatchesCpu) {
  LATTICE_REQUIRE_SHARED_FILE(path, "semantickitti/000000.bin");
  const io::PointCloud cloud = io::read_kitti_bin(path);
  const ChainResult ref = run_chain(cloud, Device::cpu(), DType::f64);
  for (DType dtype : {DType::f32, DType::f16}) {
    SCOPED_TRACE(std::string(dtype_name(dtype)));
    poison_pool();
    const ChainResult got = run_chain(cloud, k_gpu, dtype);
    EXPECT_EQ(got.points, ref.points);
    EXPECT_EQ(got.voxels, ref.voxels);
    EXPECT_EQ(got.pooled, ref.pooled);
    EXPECT_EQ(got.upsampled_rows, ref.upsampled_rows);
    EXPECT_TRUE(got.upsampled_on_voxel_key);
    expect_same_ints(got.voxel_coords, ref.voxel_coords, "voxel coords");
    expect_same_ints(got.pooled_coords, ref.pooled_coords, "pooled coords");
    expect_same_ints(got.inverse_rows, ref.inverse_rows, "inverse rows");
    const double tol = dtype == DType::f32 ? 1e-4 : 2e-2;
    EXPECT_LT(relative_max_error(got.upsampled, ref.upsampled), tol);
    EXPECT_LT(relative_max_error(got.linear, ref.linear), tol);
    EXPECT_LT(relative_max_error(got.nearest, ref.nearest), tol);
    // Deterministic: a second run is bitwise identical.
    const ChainResult again = run_chain(cloud, k_gpu, dtype);
    EXPECT_EQ(relative_max_error(again.linear, got.linear), 0.0);
    EXPECT_EQ(relative_max_error(again.upsampled, got.upsampled), 0.0);
  }
}

}  // namespace
}  // namespace lattice::testing::gpu

// GPU suite, the other ops of this release against the CPU: feature ops,
// voxelize (bit-exact voxels, including the real scan), and MinkUNet end to
// end — CPU agreement, run-to-run determinism, and a CUDA graph capture of the
// whole forward pass, which fails if anything in it waits for the host.
#include <algorithm>

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include "gpu/gpu_harness.hpp"
#include "lattice/io/point_cloud.hpp"
#include "lattice/models/minkunet.hpp"
#include "lattice/ops/features.hpp"
#include "lattice/ops/pooling.hpp"
#include "lattice/ops/voxelize.hpp"
#include "lattice/sim/lidar_scene.hpp"

namespace lattice::testing::gpu {
namespace {

struct Pair {
  SparseTensor cpu, gpu;
};

// The same random tensor on both devices (capacity rows beyond `rows` hold garbage).
Pair random_pair(std::uint64_t seed, DType dtype, int channels, std::int64_t rows, std::int64_t capacity) {
  Rng rng(seed);
  std::vector<Coord> coords;
  for (std::int64_t i = 0; i < capacity; ++i) coords.push_back({static_cast<int>(i % 3), static_cast<int>(i), -7, 2});
  std::vector<double> v = random_values(rng, static_cast<std::size_t>(capacity * channels));
  for (std::size_t i = static_cast<std::size_t>(rows * channels); i < v.size(); ++i) v[i] = 1e4;
  const Array feats = make_array(v, Shape{capacity, channels}, dtype);
  return {SparseTensor::from_coords(coords_array(coords), feats,
                                    {.manager = CoordinateManager::create(), .active_rows = rows}),
          SparseTensor::from_coords(coords_array(coords).to(k_gpu), feats.to(k_gpu),
                                    {.manager = CoordinateManager::create(), .active_rows = rows})};
}

void expect_close(const SparseTensor& cpu, const SparseTensor& gpu, DType dtype, double tol_scale = 1.0) {
  const std::int64_t rows = cpu.rows();
  ASSERT_EQ(gpu.rows(), rows);
  const auto a = to_doubles(cpu.feats().rows(0, rows));
  const auto b = to_doubles(gpu.feats().rows(0, rows));
  std::vector<double> mag(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) mag[i] = std::max(1.0, std::abs(a[i]));
  const std::string report =
      compare_elements(b, a, mag, tol_scale * tolerance_for(dtype), static_cast<std::size_t>(cpu.channels()));
  EXPECT_TRUE(report.empty()) << report;
}

class GpuFeatures : public GpuParamTest<DType> {};

TEST_P(GpuFeatures, ActivationsMatchTheCpu) {
  const DType dtype = GetParam();
  const Pair p = random_pair(1, dtype, 33, 200, 256);
  for (auto kind : {ops::ActivationKind::relu, ops::ActivationKind::leaky_relu, ops::ActivationKind::gelu,
                    ops::ActivationKind::gelu_tanh, ops::ActivationKind::silu, ops::ActivationKind::sigmoid,
                    ops::ActivationKind::tanh, ops::ActivationKind::softplus}) {
    poison_pool(16 << 20);
    expect_close(ops::activation(p.cpu, {kind}), ops::activation(p.gpu, {kind}), dtype, 2.0);
  }
}

TEST_P(GpuFeatures, BatchNormTrainingAndEvalMatchTheCpu) {
  const DType dtype = GetParam();
  const Pair p = random_pair(2, dtype, 64, 300, 320);
  Rng rng(3);
  const Array gamma = make_array(random_values(rng, 64), Shape{64}, DType::f32);
  const Array beta = make_array(random_values(rng, 64), Shape{64}, DType::f32);
  const Array mean = make_array(random_values(rng, 64), Shape{64}, DType::f32);
  Array var = make_array(random_values(rng, 64), Shape{64}, DType::f32);
  var = abs64(var).astype(DType::f32);
  for (bool training : {true, false}) {
    const ops::BatchNormArgs a_cpu{gamma, beta, mean, var, training};
    const ops::BatchNormArgs a_gpu{gamma.to(k_gpu), beta.to(k_gpu), mean.to(k_gpu), var.to(k_gpu), training};
    poison_pool(16 << 20);
    const auto rc = ops::batch_norm(p.cpu, a_cpu);
    const auto rg = ops::batch_norm(p.gpu, a_gpu);
    expect_close(rc.output, rg.output, dtype, 2.0);
    const auto m1 = rc.running_mean.to_vector<float>(), m2 = rg.running_mean.to_vector<float>();
    const auto v1 = rc.running_var.to_vector<float>(), v2 = rg.running_var.to_vector<float>();
    for (std::size_t i = 0; i < m1.size(); ++i) {
      EXPECT_NEAR(m1[i], m2[i], 1e-5 * (1 + std::abs(m1[i])));
      EXPECT_NEAR(v1[i], v2[i], 1e-5 * (1 + std::abs(v1[i])));
    }
  }
}

TEST_P(GpuFeatures, AddAndCatMatchTheCpu) {
  const DType dtype = GetParam();
  const Pair p = random_pair(4, dtype, 16, 100, 128);
  poison_pool(16 << 20);
  expect_close(ops::add(p.cpu, p.cpu), ops::add(p.gpu, p.gpu), dtype);
  const SparseTensor cc = ops::cat(p.cpu, ops::relu(p.cpu));
  const SparseTensor cg = ops::cat(p.gpu, ops::relu(p.gpu));
  EXPECT_EQ(cg.channels(), 32);
  expect_close(cc, cg, dtype);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, GpuFeatures, ::testing::Values(DType::f32, DType::f16, DType::bf16, DType::f64),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// ---- pooling -------------------------------------------------------------------------

class GpuPooling : public GpuParamTest<DType> {};

TEST_P(GpuPooling, RelationAndGlobalPoolingMatchTheCpu) {
  const DType dtype = GetParam();
  Rng rng(21);
  const auto coords = random_coords(rng, 3, -8, 7, {1, 1, 1}, 0.3);
  const auto n = static_cast<std::int64_t>(coords.size());
  std::vector<double> v(static_cast<std::size_t>(n * 6));
  for (double& e : v) e = static_cast<double>(rng.integer(-8, 8)) * 0.125;  // ties for max
  const Array feats = make_array(v, Shape{n, 6}, dtype);
  const SparseTensor xc =
      SparseTensor::from_coords(coords_array(coords), feats, {.manager = CoordinateManager::create()});
  const SparseTensor xg = SparseTensor::from_coords(coords_array(coords).to(k_gpu), feats.to(k_gpu),
                                                    {.manager = CoordinateManager::create()});
  for (auto mode : {ops::PoolMode::sum, ops::PoolMode::max, ops::PoolMode::avg}) {
    for (const ops::Pool3dParams& p :
         {ops::Pool3dParams{}, ops::Pool3dParams{.kernel_size = 3, .stride = 2, .padding = 1}}) {
      poison_pool(16 << 20);
      const SparseTensor yc = ops::pool3d(xc, mode, p), yg = ops::pool3d(xg, mode, p);
      ASSERT_EQ(yg.rows(), yc.rows());
      EXPECT_EQ(coords_from_array(yg.coords(), yg.rows()), coords_from_array(yc.coords(), yc.rows()));
      expect_close(yc, yg, dtype);
    }
    poison_pool(16 << 20);
    const auto gc = to_doubles(ops::global_pool(xc, mode));
    const auto gg = to_doubles(ops::global_pool(xg, mode));
    ASSERT_EQ(gg.size(), gc.size());
    for (std::size_t i = 0; i < gc.size(); ++i) EXPECT_NEAR(gg[i], gc[i], tolerance_for(dtype) * (1 + std::abs(gc[i])));
  }
}

// Many chunks of the two-level reduction (more than one per warp lane) and
// several batch items in shuffled row order; values are multiples of 1/8, so
// the float32 sums are exact and must agree with the CPU to rounding of avg.
TEST_P(GpuPooling, GlobalPoolingOverManyChunks) {
  const DType dtype = GetParam();
  Rng rng(22);
  auto coords = random_coords(rng, 5, -20, 19, {1, 1, 1}, 0.3);
  std::shuffle(coords.begin(), coords.end(), rng.engine());
  const auto n = static_cast<std::int64_t>(coords.size());
  ASSERT_GT(n, 32 * 128 * 2);
  std::vector<double> v(static_cast<std::size_t>(n * 40));
  for (double& e : v) e = static_cast<double>(rng.integer(-8, 8)) * 0.125;
  const Array feats = make_array(v, Shape{n, 40}, dtype);
  const SparseTensor xc =
      SparseTensor::from_coords(coords_array(coords), feats, {.manager = CoordinateManager::create()});
  const SparseTensor xg = SparseTensor::from_coords(coords_array(coords).to(k_gpu), feats.to(k_gpu),
                                                    {.manager = CoordinateManager::create()});
  for (auto mode : {ops::PoolMode::sum, ops::PoolMode::max, ops::PoolMode::avg}) {
    // Two empty trailing items for sum and avg (0); max over an empty item is an error.
    const std::int64_t items = mode == ops::PoolMode::max ? 5 : 7;
    poison_pool(16 << 20);
    const auto gc = to_doubles(ops::global_pool(xc, mode, items));
    const auto gg = to_doubles(ops::global_pool(xg, mode, items));
    ASSERT_EQ(gg.size(), gc.size());
    for (std::size_t i = 0; i < gc.size(); ++i) {
      ASSERT_NEAR(gg[i], gc[i], tolerance_for(dtype) * (1 + std::abs(gc[i]))) << "entry " << i;
    }
    EXPECT_EQ(to_doubles(ops::global_pool(xg, mode, items)), gg);  // run to run
  }
}

TEST_P(GpuPooling, EmptyBatchItemMaxIsAStickyError) {
  const DType dtype = GetParam();
  const SparseTensor x = SparseTensor::from_coords(
      Array::from_vector(std::vector<std::int32_t>{0, 0, 0, 0, 2, 0, 0, 0}, Shape{2, 4}).to(k_gpu),
      Array::full(Shape{2, 3}, dtype, 1.0, k_gpu), {.manager = CoordinateManager::create()});
  const Array g = ops::global_pool(x, ops::PoolMode::max);  // batch item 1 is empty
  EXPECT_EQ(g.dim(0), 3);
  EXPECT_THROW(synchronize(k_gpu), ValueError);
  EXPECT_EQ(to_doubles(ops::global_pool(x, ops::PoolMode::sum)), (std::vector<double>{1, 1, 1, 0, 0, 0, 1, 1, 1}));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, GpuPooling, ::testing::Values(DType::f32, DType::f16, DType::bf16, DType::f64),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// ---- voxelize ----------------------------------------------------------------------

class GpuVoxelize : public GpuTest {};

void expect_same_voxels(const Array& points, const std::optional<Array>& feats, const ops::VoxelizeParams& params,
                        const std::optional<Array>& batch = std::nullopt) {
  const ops::Voxelized c = ops::voxelize(points, feats, params, batch);
  ops::VoxelizeParams gp = params;
  gp.manager = CoordinateManager::create();
  poison_pool(16 << 20);
  const ops::Voxelized g = ops::voxelize(points.to(k_gpu), feats ? std::optional(feats->to(k_gpu)) : std::nullopt, gp,
                                         batch ? std::optional(batch->to(k_gpu)) : std::nullopt);
  const std::int64_t m = c.tensor.rows();
  ASSERT_EQ(g.tensor.rows(), m);
  EXPECT_EQ(coords_from_array(g.tensor.coords(), m), coords_from_array(c.tensor.coords(), m));
  EXPECT_EQ(g.inverse_rows.to_vector<std::int32_t>(), c.inverse_rows.to_vector<std::int32_t>());
  auto gc = g.counts.to_vector<std::int32_t>();
  gc.resize(static_cast<std::size_t>(m));
  EXPECT_EQ(gc, c.counts.to_vector<std::int32_t>());
  if (feats) expect_close(c.tensor, g.tensor, feats->dtype());
}

TEST_F(GpuVoxelize, MatchesTheCpuForEveryReduction) {
  Rng rng(7);
  const std::int64_t n = 50000;
  std::vector<float> pts(static_cast<std::size_t>(3 * n));
  for (float& p : pts) p = static_cast<float>(rng.uniform(-5, 5));
  for (std::size_t i = 0; i < 3000; ++i) pts[i] = static_cast<float>(rng.integer(-50, 50)) * 0.1f;  // on edges
  std::vector<std::int32_t> batch(static_cast<std::size_t>(n));
  for (auto& b : batch) b = static_cast<std::int32_t>(rng.integer(0, 3));
  const Array points = Array::from_vector(pts, Shape{n, 3});
  const Array feats = make_array(random_values(rng, static_cast<std::size_t>(n * 4)), Shape{n, 4}, DType::f32);
  for (auto reduction : {ops::Reduction::mean, ops::Reduction::sum, ops::Reduction::max}) {
    expect_same_voxels(points, feats, {.voxel_size = 0.1, .origin = 0.05, .reduction = reduction},
                       Array::from_vector(batch, Shape{n}));
  }
  expect_same_voxels(points.astype(DType::f64), feats.astype(DType::f16), {.voxel_size = 0.25, .stride = 2});
  expect_same_voxels(Array::empty(Shape{0, 3}, DType::f32), std::nullopt, {.voxel_size = 0.1});
}

TEST_F(GpuVoxelize, SemanticKittiScanIsBitExact) {
  LATTICE_REQUIRE_SHARED_FILE(path, "semantickitti/000000.bin");
  const io::PointCloud cloud = io::read_kitti_bin(path);
  const ops::Voxelized g = ops::voxelize(cloud.positions.to(k_gpu), std::nullopt, {.voxel_size = 0.05});
  EXPECT_EQ(g.tensor.rows(), 94444);
  expect_same_voxels(cloud.positions, std::nullopt, {.voxel_size = 0.05});
}

// ---- MinkUNet end to end ---------------------------------------------------------------

class GpuMinkUNet : public GpuTest {};

SparseTensor scan_input(Device device, DType dtype, const std::shared_ptr<CoordinateManager>& m) {
  const io::PointCloud scan = sim::simulate_lidar_scan({.seed = 2, .azimuth_steps = 400});
  const ops::Voxelized v =
      ops::voxelize(scan.positions.to(device), scan.positions.to(device), {.voxel_size = 0.1, .manager = m});
  const SparseTensor x = v.tensor.replace_feats(v.tensor.feats().astype(dtype));
  // 4 input channels: x, y, z and a constant.
  return ops::cat(x, x.replace_feats(Array::full(Shape{x.capacity(), 1}, dtype, 1.0, device)));
}

TEST_F(GpuMinkUNet, AgreesWithTheCpuAndIsDeterministic) {
  for (DType dtype : {DType::f32, DType::f16}) {
    const models::MinkUNet cpu_net({.width = 8}, 11, dtype, Device::cpu());
    const models::MinkUNet gpu_net({.width = 8}, 11, dtype, k_gpu);
    const SparseTensor xc = scan_input(Device::cpu(), dtype, CoordinateManager::create());
    const SparseTensor xg = scan_input(k_gpu, dtype, CoordinateManager::create());
    const auto yc = to_doubles(cpu_net.forward(xc).feats().rows(0, xc.rows()));
    const SparseTensor yg1 = gpu_net.forward(xg);
    const auto g1 = to_doubles(yg1.feats().rows(0, xc.rows()));
    const auto g2 = to_doubles(gpu_net.forward(xg).feats().rows(0, xc.rows()));
    EXPECT_EQ(g1, g2) << "run-to-run difference on the GPU";
    double err = 0, norm = 0;
    for (std::size_t i = 0; i < yc.size(); ++i) {
      err += (g1[i] - yc[i]) * (g1[i] - yc[i]);
      norm += yc[i] * yc[i];
    }
    EXPECT_LT(std::sqrt(err / norm), dtype == DType::f32 ? 1e-4 : 3e-2) << dtype_name(dtype);
  }
}

TEST_F(GpuMinkUNet, InferenceModeAgreesWithTheCpu) {
  const models::MinkUNetConfig cfg{.width = 8, .batch_statistics = false};
  const models::MinkUNet cpu_net(cfg, 13, DType::f32, Device::cpu());
  const models::MinkUNet gpu_net(cfg, 13, DType::f32, k_gpu);
  const SparseTensor xc = scan_input(Device::cpu(), DType::f32, CoordinateManager::create());
  const SparseTensor xg = scan_input(k_gpu, DType::f32, CoordinateManager::create());
  const auto yc = to_doubles(cpu_net.forward(xc).feats().rows(0, xc.rows()));
  const auto yg = to_doubles(gpu_net.forward(xg).feats().rows(0, xc.rows()));
  double err = 0, norm = 0;
  for (std::size_t i = 0; i < yc.size(); ++i) {
    err += (yg[i] - yc[i]) * (yg[i] - yc[i]);
    norm += yc[i] * yc[i];
  }
  EXPECT_LT(std::sqrt(err / norm), 1e-4);
}

TEST_F(GpuMinkUNet, WholeForwardCapturesIntoACudaGraph) {
  // Capture mode "global": any host synchronisation or pageable copy inside
  // the forward pass (relation building included) makes capture fail.
  const models::MinkUNet net({.width = 16}, 5, DType::f16, k_gpu);
  const SparseTensor x = scan_input(k_gpu, DType::f16, CoordinateManager::create());
  const std::int64_t rows = x.rows();
  const auto eager = to_doubles(net.forward(x).feats().rows(0, rows));
  // A fresh coordinate set (same values, new key): the captured pass builds every relation.
  auto m = CoordinateManager::create();
  const SparseTensor fresh =
      SparseTensor::from_coords(x.coords().clone(), x.feats().clone(), {.manager = m, .active_rows = rows});
  synchronize(k_gpu);
  auto stream = static_cast<cudaStream_t>(current_stream(k_gpu).handle);
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  SparseTensor y;
  try {
    y = net.forward(fresh);
  } catch (const std::exception& e) {
    cudaGraph_t broken = nullptr;
    cudaStreamEndCapture(stream, &broken);
    if (broken) cudaGraphDestroy(broken);
    FAIL() << "forward pass failed under capture: " << e.what();
  }
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  synchronize(k_gpu);
  const auto replayed = to_doubles(y.feats().rows(0, rows));
  EXPECT_EQ(replayed, eager) << "the replayed graph must reproduce the eager forward pass bit for bit";
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

}  // namespace
}  // namespace lattice::testing::gpu

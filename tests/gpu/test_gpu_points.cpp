// GPU suite, points family against the CPU route: devoxelize (linear, nearest,
// with and without the point->voxel map), voxelize_with_quantization,
// sparse_collate and the batch decomposition. Per element, random inputs,
// several shapes and dtypes, empty / one-row cases, run-to-run bitwise
// determinism and the sticky device errors.
#include <cstring>

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include "gpu/gpu_harness.hpp"
#include "lattice/io/point_cloud.hpp"
#include "lattice/ops/batching.hpp"
#include "lattice/ops/voxelize.hpp"
#include "support/expect_error.hpp"

namespace lattice::testing::gpu {
namespace {

std::vector<unsigned char> raw_bytes(const Array& a) { return bytes_of(a); }

struct TensorPair {
  SparseTensor cpu, gpu;
};

TensorPair random_tensor(Rng& rng, int batches, const I3& s, int c, DType dtype, double density = 0.4) {
  const auto coords = random_coords(rng, batches, -4, 3, s, density);
  const Array feats = make_array(random_values(rng, coords.size() * static_cast<std::size_t>(c)),
                                 Shape{static_cast<std::int64_t>(coords.size()), c}, dtype);
  const Int3 stride{s[0], s[1], s[2]};
  return {SparseTensor::from_coords(coords_array(coords), feats, {.stride = stride}),
          SparseTensor::from_coords(coords_array(coords).to(k_gpu), feats.to(k_gpu), {.stride = stride})};
}

template <class P>
Array random_points(Rng& rng, int n, const I3& s, bool boundaries) {
  std::vector<P> pts(static_cast<std::size_t>(3 * n));
  for (int i = 0; i < n; ++i)
    for (int a = 0; a < 3; ++a) {
      double u = rng.uniform(-4.0 * s[static_cast<std::size_t>(a)] - 1.5, 4.0 * s[static_cast<std::size_t>(a)] + 1.5);
      if (boundaries && i % 3 == 0) u = std::floor(u);
      pts[static_cast<std::size_t>(3 * i + a)] = static_cast<P>(0.25 + u * 0.1);
    }
  return Array::from_vector(pts, Shape{n, 3});
}

void expect_same_values(const Array& cpu, const Array& gpu, DType dtype) {
  ASSERT_EQ(gpu.shape(), cpu.shape());
  ASSERT_EQ(gpu.device(), k_gpu);
  const auto a = to_doubles(cpu);
  const auto b = to_doubles(gpu.to(Device::cpu()));
  std::vector<double> mag(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) mag[i] = std::max(1.0, std::abs(a[i]));
  const std::string report = compare_elements(b, a, mag, tolerance_for(dtype), static_cast<std::size_t>(cpu.dim(1)));
  EXPECT_TRUE(report.empty()) << report;
}

// ---- devoxelize ------------------------------------------------------------------

class GpuDevoxelize : public GpuParamTest<DType> {};

TEST_P(GpuDevoxelize, MatchesTheCpuAndIsDeterministic) {
  const DType dtype = GetParam();
  for (int stride : {1, 2}) {
    for (bool f64_points : {false, true}) {
      for (int batches : {1, 3}) {
        Rng rng(static_cast<std::uint64_t>(stride * 100 + f64_points * 10 + batches + static_cast<int>(dtype) * 1000));
        const I3 s{stride, 2 * stride, stride};
        const int c = 1 + static_cast<int>(rng.integer(0, 6));
        const TensorPair x = random_tensor(rng, batches, s, c, dtype);
        const int n = 4000;
        const Array pts = f64_points ? random_points<double>(rng, n, s, true) : random_points<float>(rng, n, s, true);
        std::vector<std::int32_t> b(static_cast<std::size_t>(n));
        for (auto& v : b) v = static_cast<std::int32_t>(rng.integer(0, batches - 1));
        const Array bidx = Array::from_vector(b, Shape{n});
        for (auto interp : {ops::Interpolation::linear, ops::Interpolation::nearest}) {
          SCOPED_TRACE(::testing::Message() << "stride " << stride << " f64 points " << f64_points << " batches "
                                            << batches << " linear " << (interp == ops::Interpolation::linear));
          const ops::DevoxelizeParams params{.voxel_size = 0.1, .origin = 0.25, .interpolation = interp};
          const Array yc = ops::devoxelize(x.cpu, pts, params, std::nullopt, bidx);
          poison_pool(16 << 20);
          const Array yg = ops::devoxelize(x.gpu, pts.to(k_gpu), params, std::nullopt, bidx.to(k_gpu));
          expect_same_values(yc, yg, dtype);
          const Array yg2 = ops::devoxelize(x.gpu, pts.to(k_gpu), params, std::nullopt, bidx.to(k_gpu));
          EXPECT_EQ(raw_bytes(yg), raw_bytes(yg2)) << "not bitwise deterministic";
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, GpuDevoxelize, ::testing::Values(DType::f32, DType::f16, DType::f64),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST_F(GpuTest, DevoxelizeRoundTripNearestWithAndWithoutMap) {
  Rng rng(5);
  const int n = 5000, c = 3;
  const Array pts = random_points<float>(rng, n, {1, 1, 1}, true).to(k_gpu);
  const Array feats = make_array(random_values(rng, n * c), Shape{n, c}, DType::f32).to(k_gpu);
  for (int stride : {1, 2, 4}) {
    const ops::Voxelized v = ops::voxelize(pts, feats, {.voxel_size = 0.1, .origin = 0.25, .stride = stride});
    const ops::DevoxelizeParams dp{.voxel_size = 0.1, .origin = 0.25, .interpolation = ops::Interpolation::nearest};
    const auto y = ops::devoxelize(v.tensor, pts, dp).to_vector<float>();
    const auto ym = ops::devoxelize(v.tensor, pts, dp, v.inverse_rows).to_vector<float>();
    const auto vf = v.tensor.feats().to_vector<float>();
    const auto inv = v.inverse_rows.to_vector<std::int32_t>();
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < c; ++j) {
        const float want = vf[static_cast<std::size_t>(inv[static_cast<std::size_t>(i)] * c + j)];
        ASSERT_EQ(y[static_cast<std::size_t>(i * c + j)], want) << "stride " << stride << " point " << i;
        ASSERT_EQ(ym[static_cast<std::size_t>(i * c + j)], want) << "stride " << stride << " point " << i;
      }
  }
}

TEST_F(GpuTest, DevoxelizeEmptyAndOneRow) {
  const SparseTensor one = SparseTensor::from_coords(
      coords_array({{0, 3, -2, 1}}).to(k_gpu), Array::from_vector(std::vector<float>{2, -1}, Shape{1, 2}).to(k_gpu));
  EXPECT_EQ(ops::devoxelize(one, Array::empty(Shape{0, 3}, DType::f32, k_gpu), {.voxel_size = 0.5}).shape(),
            (Shape{0, 2}));
  const Array p = Array::from_vector(std::vector<float>{1.7f, -0.8f, 0.6f}, Shape{1, 3}).to(k_gpu);
  EXPECT_EQ(ops::devoxelize(one, p, {.voxel_size = 0.5}).to_vector<float>(), (std::vector<float>{2, -1}));
  EXPECT_EQ(
      ops::devoxelize(one, p, {.voxel_size = 0.5, .interpolation = ops::Interpolation::nearest}).to_vector<float>(),
      (std::vector<float>{2, -1}));
  const SparseTensor empty = SparseTensor::from_coords(Array::empty(Shape{0, 4}, DType::i32, k_gpu),
                                                       Array::empty(Shape{0, 3}, DType::f32, k_gpu));
  EXPECT_EQ(ops::devoxelize(empty, p, {.voxel_size = 0.5}).to_vector<float>(), (std::vector<float>{0, 0, 0}));
}

TEST_F(GpuTest, DevoxelizeCapacityRowsAreNotVoxels) {
  const SparseTensor x = SparseTensor::from_coords(
      coords_array({{0, 0, 0, 0}, {0, 1, 0, 0}, {0, 2, 0, 0}}).to(k_gpu),
      Array::from_vector(std::vector<float>{4, 8, 99}, Shape{3, 1}).to(k_gpu), {.active_rows = 2});
  const Array pts = Array::from_vector(std::vector<float>{0.5f, 0.5f, 0.5f, 2.5f, 0.5f, 0.5f}, Shape{2, 3}).to(k_gpu);
  const ops::DevoxelizeParams nearest{.voxel_size = 1.0, .interpolation = ops::Interpolation::nearest};
  EXPECT_EQ(ops::devoxelize(x, pts, nearest).to_vector<float>(), (std::vector<float>{4, 0}));
  EXPECT_EQ(ops::devoxelize(x, pts, {.voxel_size = 1.0}).to_vector<float>(), (std::vector<float>{4, 0}));  // not 99
  // A map entry at or past the active rows is a sticky device error (the CPU's check, made on the device).
  synchronize(k_gpu);
  EXPECT_EQ(ops::devoxelize(x, pts, nearest, Array::from_vector(std::vector<std::int32_t>{1, -1}, Shape{2}).to(k_gpu))
                .to_vector<float>(),
            (std::vector<float>{8, 0}));
  (void)ops::devoxelize(x, pts, nearest, Array::from_vector(std::vector<std::int32_t>{1, 2}, Shape{2}).to(k_gpu));
  expect_error<ValueError>([&] { synchronize(k_gpu); },
                           {"[devoxelize]", "'point_voxel_map'", "entry 1 is 2", "outside [-1, 2)"});
}

TEST_F(GpuTest, DevoxelizeDeviceErrorsAreSticky) {
  synchronize(k_gpu);  // nothing pending from earlier tests
  const SparseTensor x = SparseTensor::from_coords(coords_array({{0, 0, 0, 0}}).to(k_gpu),
                                                   Array::from_vector(std::vector<float>{1}, Shape{1, 1}).to(k_gpu));
  const Array bad = Array::from_vector(std::vector<float>{0, 0, 0, 0, NAN, 0, INFINITY, 0, 0}, Shape{3, 3}).to(k_gpu);
  (void)ops::devoxelize(x, bad, {.voxel_size = 1.0});
  expect_error<ValueError>([&] { synchronize(k_gpu); }, {"[devoxelize]", "'points'", "point 1", "non-finite"});
  const Array pts = Array::zeros(Shape{2, 3}, DType::f32, k_gpu);
  (void)ops::devoxelize(x, pts, {.voxel_size = 1.0}, std::nullopt,
                        Array::from_vector(std::vector<std::int32_t>{0, 2000}, Shape{2}).to(k_gpu));
  expect_error<ValueError>([&] { synchronize(k_gpu); }, {"[devoxelize]", "'batch_indices'", "entry 1", "2000"});
  // Host-side checks still run before anything is launched.
  expect_error<DeviceError>(
      [&] {
        ops::devoxelize(x, Array::zeros(Shape{2, 3}, DType::f32), {.voxel_size = 1.0});
      },
      {"[devoxelize]", "'points'", "cpu"});
  expect_error<DeviceError>(
      [&] {
        ops::devoxelize(x, pts, {.voxel_size = 1.0, .interpolation = ops::Interpolation::nearest},
                        Array::zeros(Shape{2}, DType::i32));
      },
      {"[devoxelize]", "'point_voxel_map'"});
  synchronize(k_gpu);
}

TEST_F(GpuTest, DevoxelizeSemanticKittiMatchesTheCpu) {
  LATTICE_REQUIRE_SHARED_FILE(path, "semantickitti/000000.bin");
  const io::PointCloud cloud = io::read_kitti_bin(path);
  const ops::Voxelized vc = ops::voxelize(cloud.positions, cloud.positions, {.voxel_size = 0.05});
  const Array pg = cloud.positions.to(k_gpu);
  const ops::Voxelized vg = ops::voxelize(pg, pg, {.voxel_size = 0.05});
  for (auto interp : {ops::Interpolation::linear, ops::Interpolation::nearest}) {
    const ops::DevoxelizeParams dp{.voxel_size = 0.05, .interpolation = interp};
    expect_same_values(ops::devoxelize(vc.tensor, cloud.positions, dp), ops::devoxelize(vg.tensor, pg, dp), DType::f32);
  }
  const ops::DevoxelizeParams dn{.voxel_size = 0.05, .interpolation = ops::Interpolation::nearest};
  EXPECT_EQ(raw_bytes(ops::devoxelize(vg.tensor, pg, dn)),
            raw_bytes(ops::devoxelize(vg.tensor, pg, dn, vg.inverse_rows)));
}

TEST_F(GpuTest, QuantizeAndDevoxelizeCaptureIntoACudaGraph) {
  // Capture mode "global": a host synchronisation or pageable copy inside
  // these ops makes the capture fail (the steady-state path never waits).
  Rng rng(17);
  const int n = 3000;
  const Array pts = random_points<float>(rng, n, {1, 1, 1}, true).to(k_gpu);
  std::vector<std::int32_t> b(static_cast<std::size_t>(n));
  for (auto& v : b) v = static_cast<std::int32_t>(rng.integer(0, 1));
  const Array bidx = Array::from_vector(b, Shape{n}).to(k_gpu);
  const ops::Voxelized v = ops::voxelize(pts, pts, {.voxel_size = 0.1, .origin = 0.25}, bidx);
  const ops::DevoxelizeParams lin{.voxel_size = 0.1, .origin = 0.25};
  const ops::DevoxelizeParams near{.voxel_size = 0.1, .origin = 0.25, .interpolation = ops::Interpolation::nearest};
  const auto eager_lin = raw_bytes(ops::devoxelize(v.tensor, pts, lin, std::nullopt, bidx));
  const auto eager_q =
      raw_bytes(ops::voxelize_with_quantization(pts, {.voxel_size = 0.1, .origin = 0.25}, bidx).point_rows);
  // A fresh set (same values, new key): its hash index is built under capture.
  const std::int64_t rows = v.tensor.rows();
  const SparseTensor fresh = SparseTensor::from_coords(v.tensor.coords().clone(), v.tensor.feats().clone(),
                                                       {.manager = CoordinateManager::create(), .active_rows = rows});
  synchronize(k_gpu);
  auto stream = static_cast<cudaStream_t>(current_stream(k_gpu).handle);
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  Array y_lin, y_near, y_map, q_rows;
  try {
    y_lin = ops::devoxelize(fresh, pts, lin, std::nullopt, bidx);
    y_near = ops::devoxelize(fresh, pts, near, std::nullopt, bidx);
    y_map = ops::devoxelize(fresh, pts, near, v.inverse_rows, bidx);
    q_rows = ops::voxelize_with_quantization(pts, {.voxel_size = 0.1, .origin = 0.25}, bidx).point_rows;
  } catch (const std::exception& e) {
    cudaGraph_t broken = nullptr;
    cudaStreamEndCapture(stream, &broken);
    if (broken) cudaGraphDestroy(broken);
    FAIL() << "failed under capture: " << e.what();
  }
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  synchronize(k_gpu);
  EXPECT_EQ(raw_bytes(y_lin), eager_lin);
  EXPECT_EQ(raw_bytes(y_near), raw_bytes(y_map));
  EXPECT_EQ(raw_bytes(q_rows), eager_q);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

// ---- voxelize_with_quantization -------------------------------------------------

TEST_F(GpuTest, QuantizationMatchesTheCpu) {
  for (int stride : {1, 2}) {
    for (bool f64 : {false, true}) {
      for (int n : {0, 1, 3000}) {
        Rng rng(static_cast<std::uint64_t>(stride + 10 * f64 + n));
        const Array pts =
            f64 ? random_points<double>(rng, n, {1, 1, 1}, true) : random_points<float>(rng, n, {1, 1, 1}, true);
        std::vector<std::int32_t> b(static_cast<std::size_t>(n));
        for (auto& v : b) v = static_cast<std::int32_t>(rng.integer(0, 2));
        const Array bidx = Array::from_vector(b, Shape{n});
        const ops::QuantizeParams qp{.voxel_size = 0.1, .origin = 0.25, .stride = stride};
        const ops::Quantized c = ops::voxelize_with_quantization(pts, qp, bidx);
        const ops::Quantized g = ops::voxelize_with_quantization(pts.to(k_gpu), qp, bidx.to(k_gpu));
        const std::int64_t m = c.active_rows.item_int();
        ASSERT_EQ(g.active_rows.item_int(), m);
        ASSERT_EQ(g.coords.dim(0), n);  // capacity
        EXPECT_EQ(coords_from_array(g.coords, m), coords_from_array(c.coords, m));
        EXPECT_EQ(g.inverse_rows.to_vector<std::int32_t>(), c.inverse_rows.to_vector<std::int32_t>());
        auto gp = g.point_rows.to_vector<std::int32_t>();
        auto gc = g.counts.to_vector<std::int32_t>();
        for (std::int64_t r = m; r < n; ++r) {
          EXPECT_EQ(gp[static_cast<std::size_t>(r)], -1);
          EXPECT_EQ(gc[static_cast<std::size_t>(r)], 0);
        }
        gp.resize(static_cast<std::size_t>(m));
        gc.resize(static_cast<std::size_t>(m));
        EXPECT_EQ(gp, c.point_rows.to_vector<std::int32_t>());
        EXPECT_EQ(gc, c.counts.to_vector<std::int32_t>());
      }
    }
  }
}

// ---- batching --------------------------------------------------------------------

class GpuBatching : public GpuParamTest<DType> {};

TEST_P(GpuBatching, CollateAndDecompositionMatchTheCpu) {
  const DType dtype = GetParam();
  for (bool mean : {false, true}) {
    Rng rng(static_cast<std::uint64_t>(static_cast<int>(dtype) * 10 + mean));
    auto mc = CoordinateManager::create();
    auto mg = CoordinateManager::create();
    std::vector<SparseTensor> ic, ig;
    const int c = 1 + static_cast<int>(rng.integer(0, 5));
    for (int i = 0; i < 4; ++i) {
      std::vector<Coord> coords;
      const int rows = i == 2 ? 0 : static_cast<int>(rng.integer(1, 300));
      for (int r = 0; r < rows; ++r) {
        coords.push_back({static_cast<int>(rng.integer(0, 2)), 2 * static_cast<int>(rng.integer(-3, 3)),
                          2 * static_cast<int>(rng.integer(-3, 3)), 2 * static_cast<int>(rng.integer(-40000, 40000))});
      }
      if (!mean) {  // unique rows for 'none'
        std::sort(coords.begin(), coords.end());
        coords.erase(std::unique(coords.begin(), coords.end()), coords.end());
        std::shuffle(coords.begin(), coords.end(), rng.engine());
      }
      const Array feats = make_array(random_values(rng, coords.size() * static_cast<std::size_t>(c)),
                                     Shape{static_cast<std::int64_t>(coords.size()), c}, dtype);
      const SparseTensorOptions o{.stride = 2, .manager = mc, .check_unique = !mean};
      SparseTensorOptions og = o;
      og.manager = mg;
      ic.push_back(SparseTensor::from_coords(coords_array(coords), feats, o));
      ig.push_back(SparseTensor::from_coords(coords_array(coords).to(k_gpu), feats.to(k_gpu), og));
    }
    const ops::CollateParams cp{.duplicate_reduction =
                                    mean ? ops::DuplicateReduction::mean : ops::DuplicateReduction::none};
    const SparseTensor yc = ops::sparse_collate(ic, cp);
    poison_pool(16 << 20);
    const SparseTensor yg = ops::sparse_collate(ig, cp);
    const std::int64_t m = yc.rows();
    ASSERT_EQ(yg.rows(), m);
    EXPECT_EQ(yg.manager(), mg);
    EXPECT_EQ(coords_from_array(yg.coords(), m), coords_from_array(yc.coords(), m));
    EXPECT_EQ(raw_bytes(yg.feats().rows(0, m)), raw_bytes(yc.feats().rows(0, m)))
        << "features differ (mean " << mean << ")";
    EXPECT_EQ(yg.batch_counts()->to_vector<std::int32_t>(), yc.batch_counts()->to_vector<std::int32_t>());
    const SparseTensor yg2 = ops::sparse_collate(ig, cp);
    EXPECT_EQ(raw_bytes(yg2.feats().rows(0, m)), raw_bytes(yg.feats().rows(0, m)));

    for (std::optional<std::int64_t> bs : {std::optional<std::int64_t>{}, std::optional<std::int64_t>{20}}) {
      const auto rc = ops::batch_rows(yc, bs), rg = ops::batch_rows(yg, bs);
      const auto xc = ops::decomposed_coordinates(yc, bs), xg = ops::decomposed_coordinates(yg, bs);
      const auto fc = ops::decomposed_features(yc, bs), fg = ops::decomposed_features(yg, bs);
      ASSERT_EQ(rg.size(), rc.size());
      ASSERT_EQ(xg.size(), rc.size());
      ASSERT_EQ(fg.size(), rc.size());
      for (std::size_t b = 0; b < rc.size(); ++b) {
        EXPECT_EQ(rg[b].device(), k_gpu);
        EXPECT_EQ(rg[b].to_vector<std::int32_t>(), rc[b].to_vector<std::int32_t>()) << "item " << b;
        EXPECT_EQ(xg[b].shape(), xc[b].shape());
        EXPECT_EQ(xg[b].to_vector<std::int32_t>(), xc[b].to_vector<std::int32_t>()) << "item " << b;
        EXPECT_EQ(fg[b].shape(), fc[b].shape());
        EXPECT_EQ(raw_bytes(fg[b]), raw_bytes(fc[b])) << "item " << b;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, GpuBatching, ::testing::Values(DType::f32, DType::f16, DType::f64),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST_F(GpuTest, CollateErrorsAndEmpty) {
  auto m = CoordinateManager::create();
  const SparseTensor g =
      SparseTensor::from_coords(coords_array({{0, 0, 0, 0}}).to(k_gpu),
                                Array::from_vector(std::vector<float>{1}, Shape{1, 1}).to(k_gpu), {.manager = m});
  const SparseTensor c = SparseTensor::from_coords(
      coords_array({{0, 0, 0, 0}}), Array::from_vector(std::vector<float>{1}, Shape{1, 1}), {.manager = m});
  expect_error<DeviceError>([&] { ops::sparse_collate({g, c}); }, {"[sparse_collate]", "'inputs'", "entry 1"});
  const SparseTensor e = SparseTensor::from_coords(Array::empty(Shape{0, 4}, DType::i32, k_gpu),
                                                   Array::empty(Shape{0, 1}, DType::f32, k_gpu), {.manager = m});
  for (auto red : {ops::DuplicateReduction::none, ops::DuplicateReduction::mean}) {
    const SparseTensor y = ops::sparse_collate({e, g, e}, {.duplicate_reduction = red});
    EXPECT_EQ(y.rows(), 1);
    EXPECT_EQ(coords_from_array(y.coords(), 1), (std::vector<Coord>{{1, 0, 0, 0}}));
    EXPECT_EQ(y.batch_counts()->to_vector<std::int32_t>(), (std::vector<std::int32_t>{0, 1, 0}));
  }
  EXPECT_TRUE(ops::batch_rows(e).empty());
  synchronize(k_gpu);
}

}  // namespace
}  // namespace lattice::testing::gpu

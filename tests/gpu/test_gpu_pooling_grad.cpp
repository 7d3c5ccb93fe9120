// CUDA VJPs of pooling, resampling, devoxelize and voxelize against the CPU
// backend evaluated in float64 on the same (rounded) inputs, per element with
// SPEC §12 tolerances scaled by the magnitude (the CPU VJP of |dy|), and
// bitwise determinism run to run. Gradients are given per CPU output row and
// laid onto the CUDA output rows by coordinate (row orders may differ).
#include <functional>
#include <map>

#include "gpu_harness.hpp"
#include "lattice/io/point_cloud.hpp"
#include "lattice/ops/pooling_grad.hpp"

namespace lattice::testing::gpu {
namespace {

using Values = std::vector<double>;
// Runs one VJP on `dev` in `dtype` from inputs x (CPU row order) and dy (per
// CPU output row); returns d(input) as host doubles in CPU row order.
using VjpRun = std::function<Values(Device dev, DType dtype, const Values& x, const Values& dy)>;

Values rounded(const Values& v, DType t) {
  return to_doubles(make_array(v, Shape{static_cast<std::int64_t>(v.size())}, t));
}

// dy given per active row of `ref` (a CPU tensor), laid onto the rows of `y`
// (any device) by coordinate; capacity rows are 0.
Array align(const Values& dy, const SparseTensor& ref, const SparseTensor& y, std::int64_t c, DType t) {
  std::map<Coord, std::int64_t> rows;
  const auto rc = coords_from_array(ref.coords(), ref.rows());
  for (std::size_t r = 0; r < rc.size(); ++r) rows[rc[r]] = static_cast<std::int64_t>(r);
  const auto yc = coords_from_array(y.coords().to(Device::cpu()), y.rows());
  Values out(static_cast<std::size_t>(y.capacity() * c), 0.0);
  for (std::size_t r = 0; r < yc.size(); ++r) {
    const auto it = rows.find(yc[r]);
    if (it == rows.end()) continue;
    for (std::int64_t j = 0; j < c; ++j) {
      out[r * static_cast<std::size_t>(c) + static_cast<std::size_t>(j)] =
          dy[static_cast<std::size_t>(it->second * c + j)];
    }
  }
  return make_array(out, Shape{y.capacity(), c}, t).to(y.device());
}

Values host_rows(const Array& a, std::int64_t rows) { return to_doubles(a.to(Device::cpu()).rows(0, rows)); }

void check(const VjpRun& run, std::int64_t n_in, std::int64_t n_out, std::int64_t c, DType t, std::uint64_t seed) {
  SCOPED_TRACE(dtype_name(t));
  Rng rng(seed);
  const Values x = rounded(random_values(rng, static_cast<std::size_t>(n_in * c)), t);
  const Values dy = rounded(random_values(rng, static_cast<std::size_t>(n_out * c)), t);
  Values abs_dy(dy.size());
  for (std::size_t i = 0; i < dy.size(); ++i) abs_dy[i] = std::abs(dy[i]);
  const Values ref = run(Device::cpu(), DType::f64, x, dy);
  Values mag = run(Device::cpu(), DType::f64, x, abs_dy);
  // float16 stores tiny gradients as subnormals: allow half their spacing (2^-25) absolutely.
  const double floor = t == DType::f16 ? 0x1p-25 / tolerance_for(t) : 1e-30;
  for (double& m : mag) m += floor;
  poison_pool();
  const Values got = run(k_gpu, t, x, dy);
  EXPECT_EQ(compare_elements(got, ref, mag, tolerance_for(t), static_cast<std::size_t>(c)), "");
  const Values again = run(k_gpu, t, x, dy);
  EXPECT_TRUE(got == again) << "not bitwise deterministic run to run";
}

SparseTensor host_tensor(const std::vector<Coord>& coords, const Values& x, std::int64_t c, DType t, Int3 stride,
                         const std::shared_ptr<CoordinateManager>& mgr) {
  SparseTensorOptions o;
  o.stride = stride;
  o.manager = mgr;
  const auto n = static_cast<std::int64_t>(coords.size());
  return SparseTensor::from_coords(coords_array(coords), make_array(x, Shape{n, c}, t), o);
}

const std::vector<DType> k_dtypes{DType::f32, DType::f16, DType::f64};

TEST_F(GpuTest, PoolBackwardMatchesTheCpu) {
  Rng rng(1);
  const auto coords = random_coords(rng, 2, -20, 19, {1, 1, 1}, 0.2);
  const auto n = static_cast<std::int64_t>(coords.size());
  for (const auto& p : {ops::Pool3dParams{}, ops::Pool3dParams{Int3{3}, Int3{1}, Int3{1}, Int3{1}}}) {
    for (auto mode : {ops::PoolMode::sum, ops::PoolMode::avg, ops::PoolMode::max}) {
      for (std::int64_t c : {8, 37}) {
        auto mgr = CoordinateManager::create();
        const SparseTensor ref =
            ops::pool3d(host_tensor(coords, Values(n * c, 0.0), c, DType::f64, Int3{1}, mgr), mode, p);
        const VjpRun run = [&](Device dev, DType t, const Values& x, const Values& dy) {
          const SparseTensor xt = host_tensor(coords, x, c, t, Int3{1}, mgr).to(dev);
          const SparseTensor y = ops::pool3d(xt, mode, p);
          return host_rows(ops::pool3d_backward(xt, y.replace_feats(align(dy, ref, y, c, t)), mode, p).feats(), n);
        };
        for (DType t : k_dtypes) check(run, n, ref.rows(), c, t, 10 + static_cast<std::uint64_t>(c));
      }
    }
  }
}

TEST_F(GpuTest, GlobalPoolBackwardMatchesTheCpu) {
  Rng rng(2);
  const auto coords = random_coords(rng, 3, -15, 14, {1, 1, 1}, 0.2);
  const auto n = static_cast<std::int64_t>(coords.size());
  const std::int64_t c = 19;
  auto mgr = CoordinateManager::create();
  for (auto mode : {ops::PoolMode::sum, ops::PoolMode::avg, ops::PoolMode::max}) {
    const VjpRun run = [&](Device dev, DType t, const Values& x, const Values& dy) {
      const SparseTensor xt = host_tensor(coords, x, c, t, Int3{1}, mgr).to(dev);
      return host_rows(ops::global_pool_backward(xt, make_array(dy, Shape{3, c}, t).to(dev), mode).feats(), n);
    };
    for (DType t : k_dtypes) check(run, n, 3, c, t, 20);
  }
}

TEST_F(GpuTest, PoolTransposeAndTrilinearBackwardMatchTheCpu) {
  Rng rng(3);
  const auto coarse = random_coords(rng, 2, -8, 7, {2, 2, 2}, 0.3);
  const auto fine = random_coords(rng, 2, -16, 15, {1, 1, 1}, 0.1);
  const auto n = static_cast<std::int64_t>(coarse.size());
  const std::int64_t c = 11;
  for (int variant = 0; variant < 4; ++variant) {
    auto mgr = CoordinateManager::create();
    // The fine target, registered per device inside `run`.
    auto forward = [&](const SparseTensor& x, Device dev) {
      const bool target = variant % 2 == 1;
      const SparseTensor ft = host_tensor(fine, Values(fine.size(), 0.0), 1, DType::f32, Int3{1}, mgr).to(dev);
      if (variant < 2) {
        ops::PoolTranspose3dParams p;
        if (target) p.target = ft;
        return std::pair{ops::pool_transpose3d(x, p), std::optional<SparseTensor>(target ? ft : SparseTensor())};
      }
      ops::TrilinearUpsample3dParams p;
      if (target) p.target = ft;
      return std::pair{ops::trilinear_upsample3d(x, p), std::optional<SparseTensor>(target ? ft : SparseTensor())};
    };
    const SparseTensor ref =
        forward(host_tensor(coarse, Values(n * c, 0.0), c, DType::f64, Int3{2}, mgr), Device::cpu()).first;
    const VjpRun run = [&](Device dev, DType t, const Values& x, const Values& dy) {
      const SparseTensor xt = host_tensor(coarse, x, c, t, Int3{2}, mgr).to(dev);
      const auto [y, target] = forward(xt, dev);
      const SparseTensor g = y.replace_feats(align(dy, ref, y, c, t));
      if (variant < 2) {
        ops::PoolTranspose3dParams p;
        if (target->defined()) p.target = *target;
        return host_rows(ops::pool_transpose3d_backward(xt, g, p).feats(), n);
      }
      ops::TrilinearUpsample3dParams p;
      if (target->defined()) p.target = *target;
      return host_rows(ops::trilinear_upsample3d_backward(xt, g, p).feats(), n);
    };
    SCOPED_TRACE(variant);
    for (DType t : k_dtypes) check(run, n, ref.rows(), c, t, 30 + static_cast<std::uint64_t>(variant));
  }
}

Array random_points(Rng& rng, std::int64_t n, double extent) {
  Values p(static_cast<std::size_t>(3 * n));
  for (double& e : p) e = rng.uniform(-extent, extent);
  return make_array(p, Shape{n, 3}, DType::f32);
}

TEST_F(GpuTest, DevoxelizeAndVoxelizeBackwardMatchTheCpu) {
  Rng rng(4);
  const std::int64_t n = 4000, c = 13;
  const Array pts = random_points(rng, n, 2.0);
  std::vector<std::int32_t> b(static_cast<std::size_t>(n));
  for (auto& v : b) v = static_cast<std::int32_t>(rng.integer(0, 1));
  const Array bidx = Array::from_vector(b, Shape{n});
  const ops::VoxelizeParams vp{.voxel_size = ops::Float3{0.2, 0.15, 0.25}, .origin = 0.05};
  const ops::Voxelized vc = ops::voxelize(pts, std::nullopt, vp, bidx);
  const std::int64_t m = vc.tensor.rows();
  // devoxelize: x on the voxels, dy per point.
  for (int variant = 0; variant < 3; ++variant) {
    ops::DevoxelizeParams dp{vp.voxel_size, vp.origin,
                             variant == 0 ? ops::Interpolation::linear : ops::Interpolation::nearest};
    const VjpRun run = [&](Device dev, DType t, const Values& x, const Values& dy) {
      const ops::Voxelized v = ops::voxelize(pts.to(dev), std::nullopt, vp, bidx.to(dev));
      // x per CPU voxel row, laid onto this device's voxel rows by coordinate.
      const SparseTensor xt = v.tensor.replace_feats(align(x, vc.tensor, v.tensor, c, t));
      std::optional<Array> map;
      if (variant == 2) map = v.inverse_rows;
      const SparseTensor dx =
          ops::devoxelize_backward(xt, pts.to(dev), make_array(dy, Shape{n, c}, t).to(dev), dp, map, bidx.to(dev));
      // Back to CPU voxel order.
      const SparseTensor dxh = dx.to(Device::cpu());
      return to_doubles(align(to_doubles(dxh.feats().rows(0, m)), dxh, vc.tensor, c, DType::f64).rows(0, m));
    };
    SCOPED_TRACE(variant);
    for (DType t : {DType::f32, DType::f16}) check(run, m, n, c, t, 40 + static_cast<std::uint64_t>(variant));
  }
  // voxelize: feats per point, dy per CPU voxel row.
  for (auto red : {ops::Reduction::mean, ops::Reduction::sum, ops::Reduction::max}) {
    ops::VoxelizeParams p = vp;
    p.reduction = red;
    const VjpRun run = [&](Device dev, DType t, const Values& x, const Values& dy) {
      const Array f = make_array(x, Shape{n, c}, t).to(dev);
      const ops::Voxelized v = ops::voxelize(pts.to(dev), f, p, bidx.to(dev));
      const SparseTensor g = v.tensor.replace_feats(align(dy, vc.tensor, v.tensor, c, t));
      return to_doubles(ops::voxelize_backward(v, f, g, red).to(Device::cpu()));
    };
    for (DType t : k_dtypes) check(run, n, m, c, t, 50 + static_cast<std::uint64_t>(red));
  }
}

TEST_F(GpuTest, DevoxelizeBackwardSemanticKittiMatchesTheCpu) {
  LATTICE_REQUIRE_SHARED_FILE(path, "semantickitti/000000.bin");
  const io::PointCloud cloud = io::read_kitti_bin(path);
  const ops::Voxelized vc = ops::voxelize(cloud.positions, cloud.positions, {.voxel_size = 0.05});
  const std::int64_t n = cloud.positions.dim(0), m = vc.tensor.rows(), c = 3;
  for (auto interp : {ops::Interpolation::linear, ops::Interpolation::nearest}) {
    const ops::DevoxelizeParams dp{.voxel_size = 0.05, .interpolation = interp};
    const VjpRun run = [&](Device dev, DType t, const Values& x, const Values& dy) {
      const Array pts = cloud.positions.to(dev);
      const ops::Voxelized v = ops::voxelize(pts, std::nullopt, {.voxel_size = 0.05});
      const SparseTensor xt = v.tensor.replace_feats(align(x, vc.tensor, v.tensor, c, t));
      const SparseTensor dxh =
          ops::devoxelize_backward(xt, pts, make_array(dy, Shape{n, c}, t).to(dev), dp).to(Device::cpu());
      return to_doubles(align(to_doubles(dxh.feats().rows(0, m)), dxh, vc.tensor, c, DType::f64).rows(0, m));
    };
    check(run, m, n, c, DType::f32, 60);
  }
}

}  // namespace
}  // namespace lattice::testing::gpu

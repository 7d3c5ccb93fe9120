// VJPs of pooling, resampling, devoxelize and voxelize (SPEC §13) on the CPU:
// central finite differences in float64 per element, the adjoint identity
// <dy, L(x)> = <L*(dy), x> for the linear maps, float32 / float16 / bfloat16 against the
// float64 gradient with SPEC §12 tolerances, edge shapes and every error path.
#include <cmath>
#include <functional>
#include <numeric>

#include <gtest/gtest.h>

#include "lattice/ops/pooling_grad.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

// One differentiable map of features: forward(feats) -> output array, and its
// VJP backward(feats, dy) -> d(feats). Both take arrays of one float dtype.
struct Map {
  std::string name;
  Shape in_shape, out_shape;
  bool linear = true;
  std::function<Array(const Array&)> forward;
  std::function<Array(const Array&, const Array&)> backward;
};

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Inputs with every element at least 1e-3 from every other (so max never
// meets a tie within the finite-difference step).
std::vector<double> distinct_values(Rng& rng, std::size_t n) {
  std::vector<double> v(n);
  std::iota(v.begin(), v.end(), 0.0);
  std::shuffle(v.begin(), v.end(), rng.engine());
  for (double& e : v) e = (e - static_cast<double>(n) / 2) * 1e-3 * (8.0 / std::max<double>(1.0, n / 64.0));
  return v;
}

// Central differences of <dy, forward(x)> in float64 per element, the adjoint
// identity for linear maps, and float32 / float16 against float64.
void check_map(const Map& m, std::uint64_t seed) {
  SCOPED_TRACE(m.name);
  Rng rng(seed);
  const auto n_in = static_cast<std::size_t>(m.in_shape.numel());
  const auto n_out = static_cast<std::size_t>(m.out_shape.numel());
  const std::vector<double> xv = m.linear ? random_values(rng, n_in) : distinct_values(rng, n_in);
  const std::vector<double> dyv = random_values(rng, n_out);
  const Array x = make_array(xv, m.in_shape, DType::f64);
  const Array dy = make_array(dyv, m.out_shape, DType::f64);
  const std::vector<double> g = to_doubles(m.backward(x, dy));
  ASSERT_EQ(g.size(), n_in);
  std::vector<double> abs_dy(dyv.size());
  for (std::size_t i = 0; i < dyv.size(); ++i) abs_dy[i] = std::abs(dyv[i]);
  std::vector<double> mag = to_doubles(m.backward(x, make_array(abs_dy, m.out_shape, DType::f64)));
  for (double& e : mag) e += 1e-3;  // FD rounding is absolute: keep a floor
  // Finite differences.
  const double h = m.linear ? 1e-3 : 1e-5;
  std::vector<double> fd(n_in);
  for (std::size_t e = 0; e < n_in; ++e) {
    std::vector<double> xp = xv, xm = xv;
    xp[e] += h;
    xm[e] -= h;
    const double fp = dot(dyv, to_doubles(m.forward(make_array(xp, m.in_shape, DType::f64))));
    const double fm = dot(dyv, to_doubles(m.forward(make_array(xm, m.in_shape, DType::f64))));
    fd[e] = (fp - fm) / (2 * h);
  }
  const std::size_t cols = static_cast<std::size_t>(m.in_shape[1]);
  EXPECT_EQ(compare_elements(g, fd, mag, 1e-6, cols), "") << "finite differences";
  if (m.linear) {
    const double lhs = dot(dyv, to_doubles(m.forward(x)));
    const double rhs = dot(g, xv);
    EXPECT_NEAR(lhs, rhs, 1e-10 * (1 + std::abs(lhs))) << "adjoint identity";
  }
  // Lower precisions against float64 on the same (rounded) inputs.
  for (DType t : {DType::f32, DType::f16, DType::bf16}) {
    const Array xt = make_array(xv, m.in_shape, t), dyt = make_array(dyv, m.out_shape, t);
    const auto xr = to_doubles(xt), dyr = to_doubles(dyt);
    const auto ref =
        to_doubles(m.backward(make_array(xr, m.in_shape, DType::f64), make_array(dyr, m.out_shape, DType::f64)));
    const auto got = to_doubles(m.backward(xt, dyt));
    std::vector<double> dabs(dyr.size());
    for (std::size_t i = 0; i < dyr.size(); ++i) dabs[i] = std::abs(dyr[i]);
    auto mg = to_doubles(m.backward(make_array(xr, m.in_shape, DType::f64), make_array(dabs, m.out_shape, DType::f64)));
    // float16 stores tiny gradients as subnormals: allow half their spacing (2^-25) absolutely.
    const double floor = t == DType::f16 ? 0x1p-25 / tolerance_for(t) : 1e-30;
    for (double& e : mg) e += floor;
    EXPECT_EQ(compare_elements(got, ref, mg, tolerance_for(t), cols), "") << dtype_name(t);
  }
}

SparseTensor tensor(const std::vector<Coord>& coords, std::int64_t c, Int3 stride,
                    const std::shared_ptr<CoordinateManager>& manager) {
  const auto n = static_cast<std::int64_t>(coords.size());
  SparseTensorOptions o;
  o.stride = stride;
  o.manager = manager;
  return SparseTensor::from_coords(coords_array(coords), Array::zeros(Shape{n, c}, DType::f64), o);
}

Array as(const Array& a, DType t) { return make_array(to_doubles(a), a.shape(), t); }

// ---- relation pooling ---------------------------------------------------------

struct PoolGradCase {
  ops::PoolMode mode;
  int k, s, p;
  int batches;
};

class PoolGrad : public ::testing::TestWithParam<PoolGradCase> {};

TEST_P(PoolGrad, FiniteDifferencesAndAdjoint) {
  const auto c = GetParam();
  Rng rng(17 + c.k * 7 + c.s * 3 + static_cast<int>(c.mode));
  const auto coords = random_coords(rng, c.batches, -5, 4, {1, 1, 1}, 0.15);
  const SparseTensor x0 = tensor(coords, 3, Int3{1}, CoordinateManager::create());
  const ops::Pool3dParams params{Int3{c.k}, Int3{c.s}, Int3{c.p}, Int3{1}};
  const SparseTensor y0 = ops::pool3d(x0, c.mode, params);
  Map m{std::string(ops::pool_mode_name(c.mode)),
        x0.feats().shape(),
        y0.feats().shape(),
        c.mode != ops::PoolMode::max,
        [&](const Array& f) { return ops::pool3d(x0.replace_feats(f), c.mode, params).feats(); },
        [&](const Array& f, const Array& dy) {
          const SparseTensor y = ops::pool3d(x0.replace_feats(f), c.mode, params);
          return ops::pool3d_backward(x0.replace_feats(f), y.replace_feats(dy), c.mode, params).feats();
        }};
  check_map(m, 5);
}

INSTANTIATE_TEST_SUITE_P(
    Modes, PoolGrad,
    ::testing::Values(PoolGradCase{ops::PoolMode::sum, 2, 2, 0, 1}, PoolGradCase{ops::PoolMode::avg, 2, 2, 0, 2},
                      PoolGradCase{ops::PoolMode::max, 2, 2, 0, 2}, PoolGradCase{ops::PoolMode::sum, 3, 1, 1, 2},
                      PoolGradCase{ops::PoolMode::avg, 3, 2, 1, 1}, PoolGradCase{ops::PoolMode::max, 3, 1, 0, 1}));

TEST(PoolGradRules, MaxTiesGoToTheLowestRowAndNaNTakesTheGradient) {
  auto mgr = CoordinateManager::create();
  // Rows 0..2 all pool into output (0, 0, 0, 0) with kernel 2, stride 2.
  const SparseTensor x0 = tensor({{0, 1, 0, 0}, {0, 0, 0, 0}, {0, 0, 1, 0}}, 2, Int3{1}, mgr);
  const Array f = make_array({1.0, 5.0, 3.0, 5.0, 3.0, std::nan("")}, Shape{3, 2}, DType::f32);
  const SparseTensor x = x0.replace_feats(f);
  const SparseTensor y = ops::max_pool3d(x);
  const SparseTensor dx =
      ops::pool3d_backward(x, y.replace_feats(make_array({2.0, 7.0}, Shape{1, 2}, DType::f32)), ops::PoolMode::max);
  // Channel 0: 3 at rows 1 and 2 -> row 1. Channel 1: NaN at row 2 -> row 2.
  EXPECT_EQ(to_doubles(dx.feats()), (std::vector<double>{0, 0, 2, 0, 0, 7}));
}

TEST(PoolGradRules, SurvivesACacheClear) {
  // Once the relation cache is cleared, the rebuilt forward relation has a new
  // output key; the gradient still lands on dy's rows (same rule onto dy's set).
  auto mgr = CoordinateManager::create();
  Rng rng(7);
  const auto coords = random_coords(rng, 2, -5, 4, {2, 2, 2}, 0.3);
  const auto n = static_cast<std::int64_t>(coords.size());
  const SparseTensor x =
      tensor(coords, 2, Int3{2}, mgr)
          .replace_feats(make_array(random_values(rng, static_cast<std::size_t>(2 * n)), Shape{n, 2}, DType::f64));
  auto random_dy = [&](const SparseTensor& y) {
    return y.replace_feats(
        make_array(random_values(rng, static_cast<std::size_t>(2 * y.capacity())), Shape{y.capacity(), 2}, DType::f64));
  };
  for (auto mode : {ops::PoolMode::sum, ops::PoolMode::avg, ops::PoolMode::max}) {
    const SparseTensor dy = random_dy(ops::pool3d(x, mode));
    const auto before = to_doubles(ops::pool3d_backward(x, dy, mode).feats());
    mgr->clear_cache();
    EXPECT_EQ(to_doubles(ops::pool3d_backward(x, dy, mode).feats()), before);
  }
  const SparseTensor dt = random_dy(ops::pool_transpose3d(x));
  const auto before = to_doubles(ops::pool_transpose3d_backward(x, dt).feats());
  mgr->clear_cache();
  EXPECT_EQ(to_doubles(ops::pool_transpose3d_backward(x, dt).feats()), before);
}

TEST(PoolGradRules, EmptyAndOneRow) {
  auto mgr = CoordinateManager::create();
  const SparseTensor one = tensor({{1, -3, 5, -1}}, 2, Int3{1}, mgr);
  for (auto mode : {ops::PoolMode::sum, ops::PoolMode::avg, ops::PoolMode::max}) {
    const SparseTensor y = ops::pool3d(one, mode);
    const auto dx = ops::pool3d_backward(one, y.replace_feats(make_array({1.5, -2.0}, Shape{1, 2}, DType::f64)), mode);
    EXPECT_EQ(to_doubles(dx.feats()), (std::vector<double>{1.5, -2.0}));
  }
  const SparseTensor empty = SparseTensor::from_coords(Array::zeros(Shape{0, 4}, DType::i32),
                                                       Array::zeros(Shape{0, 3}, DType::f32), {.manager = mgr});
  const SparseTensor y = ops::pool3d(empty, ops::PoolMode::avg);
  EXPECT_EQ(ops::pool3d_backward(empty, y, ops::PoolMode::avg).feats().dim(0), 0);
  const SparseTensor t = ops::pool_transpose3d(one.replace_feats(Array::zeros(Shape{1, 2}, DType::f64)),
                                               {.kernel_size = Int3{1}, .stride = Int3{1}});
  EXPECT_EQ(ops::pool_transpose3d_backward(one, t, {.kernel_size = Int3{1}, .stride = Int3{1}}).feats().dim(0), 1);
}

// ---- global pooling -------------------------------------------------------------

TEST(GlobalPoolGrad, FiniteDifferencesAndAdjoint) {
  Rng rng(3);
  auto coords = random_coords(rng, 3, -4, 3, {1, 1, 1}, 0.15);
  const SparseTensor x0 = tensor(coords, 4, Int3{1}, CoordinateManager::create());
  for (auto mode : {ops::PoolMode::sum, ops::PoolMode::avg, ops::PoolMode::max}) {
    Map m{"global_" + std::string(ops::pool_mode_name(mode)),
          x0.feats().shape(),
          Shape{4, 4},
          mode != ops::PoolMode::max,
          [&](const Array& f) { return ops::global_pool(x0.replace_feats(f), mode, 4); },
          [&](const Array& f, const Array& dy) {
            return ops::global_pool_backward(x0.replace_feats(f), dy, mode).feats();
          }};
    if (mode == ops::PoolMode::max) m.out_shape = Shape{3, 4};  // max over the empty item 3 is an error
    if (mode == ops::PoolMode::max)
      m.forward = [&](const Array& f) { return ops::global_pool(x0.replace_feats(f), mode, 3); };
    check_map(m, 9);
  }
}

TEST(GlobalPoolGrad, MaxTiesToTheLowestRow) {
  auto mgr = CoordinateManager::create();
  const SparseTensor x = tensor({{0, 0, 0, 0}, {1, 0, 0, 0}, {0, 1, 0, 0}}, 1, Int3{1}, mgr)
                             .replace_feats(make_array({2, 1, 2}, Shape{3, 1}, DType::f32));
  const auto dx = ops::global_pool_backward(x, make_array({4, 5}, Shape{2, 1}, DType::f32), ops::PoolMode::max);
  EXPECT_EQ(to_doubles(dx.feats()), (std::vector<double>{4, 5, 0}));
}

// ---- pool_transpose3d and trilinear upsampling ---------------------------------------

TEST(ResampleGrad, PoolTransposeFiniteDifferencesAndAdjoint) {
  Rng rng(11);
  auto mgr = CoordinateManager::create();
  const SparseTensor x0 = tensor(random_coords(rng, 2, -3, 2, {2, 2, 2}, 0.2), 2, Int3{2}, mgr);
  const SparseTensor fine = tensor(random_coords(rng, 2, -6, 5, {1, 1, 1}, 0.2), 1, Int3{1}, mgr);
  for (int variant = 0; variant < 3; ++variant) {
    ops::PoolTranspose3dParams p;
    if (variant == 1) p.kernel_size = Int3{3};
    if (variant == 2) p.target = fine;
    const SparseTensor y0 = ops::pool_transpose3d(x0, p);
    Map m{"pool_transpose_" + std::to_string(variant),
          x0.feats().shape(),
          y0.feats().shape(),
          true,
          [&, p](const Array& f) { return ops::pool_transpose3d(x0.replace_feats(f), p).feats(); },
          [&, p](const Array& f, const Array& dy) {
            return ops::pool_transpose3d_backward(x0.replace_feats(f), y0.replace_feats(dy), p).feats();
          }};
    check_map(m, 21 + static_cast<std::uint64_t>(variant));
  }
}

TEST(ResampleGrad, TrilinearFiniteDifferencesAndAdjoint) {
  Rng rng(13);
  auto mgr = CoordinateManager::create();
  const SparseTensor x0 = tensor(random_coords(rng, 2, -3, 2, {2, 2, 2}, 0.4), 2, Int3{2}, mgr);
  const SparseTensor x3 = tensor(random_coords(rng, 1, -2, 2, {3, 1, 2}, 0.4), 2, Int3{3, 1, 2}, mgr);
  const SparseTensor fine = tensor(random_coords(rng, 2, -6, 5, {1, 1, 1}, 0.2), 1, Int3{1}, mgr);
  struct V {
    SparseTensor x;
    ops::TrilinearUpsample3dParams p;
  };
  std::vector<V> variants{{x0, {}}, {x0, {.stride = Int3{2}, .target = fine}}, {x3, {.stride = Int3{3, 1, 2}}}};
  int i = 0;
  for (const V& v : variants) {
    const SparseTensor y0 = ops::trilinear_upsample3d(v.x, v.p);
    Map m{"trilinear_" + std::to_string(i++),
          v.x.feats().shape(),
          y0.feats().shape(),
          true,
          [&](const Array& f) { return ops::trilinear_upsample3d(v.x.replace_feats(f), v.p).feats(); },
          [&](const Array& f, const Array& dy) {
            return ops::trilinear_upsample3d_backward(v.x.replace_feats(f), y0.replace_feats(dy), v.p).feats();
          }};
    check_map(m, 31 + static_cast<std::uint64_t>(i));
  }
}

// ---- devoxelize and voxelize ---------------------------------------------------------

struct Cloud {
  Array points;  // (N, 3)
  Array batch;   // (N,) int32
};

Cloud cloud(Rng& rng, std::int64_t n, int batches, DType dtype) {
  std::vector<double> p(static_cast<std::size_t>(3 * n));
  for (double& e : p) e = rng.uniform(-1.0, 1.0);
  std::vector<std::int32_t> b(static_cast<std::size_t>(n));
  for (auto& e : b) e = static_cast<std::int32_t>(rng.integer(0, batches - 1));
  return {make_array(p, Shape{n, 3}, dtype), Array::from_vector(b, Shape{n}, Device::cpu())};
}

TEST(PointsGrad, DevoxelizeFiniteDifferencesAndAdjoint) {
  Rng rng(41);
  for (DType pdt : {DType::f32, DType::f64}) {
    const Cloud vox = cloud(rng, 60, 2, pdt);
    ops::VoxelizeParams vp;
    vp.voxel_size = ops::Float3{0.3, 0.25, 0.4};
    vp.origin = ops::Float3{-0.05, 0.1, 0.0};
    vp.manager = CoordinateManager::create();
    const ops::Voxelized v =
        ops::voxelize(vox.points, make_array(random_values(rng, 60 * 3), Shape{60, 3}, DType::f64), vp, vox.batch);
    const SparseTensor x0 = v.tensor;
    const Cloud q = cloud(rng, 40, 2, pdt);
    ops::DevoxelizeParams dp{vp.voxel_size, vp.origin, ops::Interpolation::linear};
    for (int variant = 0; variant < 3; ++variant) {
      ops::DevoxelizeParams p = dp;
      std::optional<Array> map;
      Array pts = q.points, batch = q.batch;
      if (variant > 0) p.interpolation = ops::Interpolation::nearest;
      if (variant == 2) {
        pts = vox.points;
        batch = vox.batch;
        map = v.inverse_rows;
      }
      Map m{
          "devoxelize_" + std::to_string(variant) + "_" + std::string(dtype_name(pdt)),
          x0.feats().shape(),
          Shape{pts.dim(0), 3},
          true,
          [&, p, map, pts, batch](const Array& f) { return ops::devoxelize(x0.replace_feats(f), pts, p, map, batch); },
          [&, p, map, pts, batch](const Array& f, const Array& dy) {
            return ops::devoxelize_backward(x0.replace_feats(f), pts, dy, p, map, batch).feats();
          }};
      check_map(m, 51 + static_cast<std::uint64_t>(variant));
    }
  }
}

TEST(PointsGrad, VoxelizeFiniteDifferencesAndAdjoint) {
  Rng rng(61);
  const Cloud pc = cloud(rng, 50, 2, DType::f32);
  for (auto red : {ops::Reduction::mean, ops::Reduction::sum, ops::Reduction::max}) {
    ops::VoxelizeParams vp;
    vp.voxel_size = ops::Float3{0.5};
    vp.reduction = red;
    vp.stride = Int3{1};
    vp.manager = CoordinateManager::create();
    const auto m_rows = ops::voxelize(pc.points, std::nullopt, vp, pc.batch).tensor.rows();
    Map m{"voxelize",
          Shape{50, 2},
          Shape{m_rows, 2},
          red != ops::Reduction::max,
          [&, vp](const Array& f) { return ops::voxelize(pc.points, f, vp, pc.batch).tensor.feats(); },
          [&, vp](const Array& f, const Array& dy) {
            const ops::Voxelized fw = ops::voxelize(pc.points, f, vp, pc.batch);
            return ops::voxelize_backward(fw, f, fw.tensor.replace_feats(dy), vp.reduction);
          }};
    check_map(m, 71 + static_cast<std::uint64_t>(red));
  }
}

TEST(PointsGrad, VoxelizeMaxGoesToTheFirstPoint) {
  // Three points in one voxel; channel 0 ties between points 0 and 2.
  const Array pts = make_array({0.1, 0.1, 0.1, 0.2, 0.2, 0.2, 0.3, 0.3, 0.3}, Shape{3, 3}, DType::f32);
  const Array f = make_array({4, 1, 2, 9, 4, 3}, Shape{3, 2}, DType::f32);
  ops::VoxelizeParams vp;
  vp.voxel_size = ops::Float3{1.0};
  vp.reduction = ops::Reduction::max;
  vp.manager = CoordinateManager::create();
  const ops::Voxelized fw = ops::voxelize(pts, f, vp);
  const Array d = ops::voxelize_backward(fw, f, fw.tensor.replace_feats(make_array({1, 2}, Shape{1, 2}, DType::f32)),
                                         ops::Reduction::max);
  EXPECT_EQ(to_doubles(d), (std::vector<double>{1, 0, 0, 2, 0, 0}));
}

TEST(PointsGrad, EmptyInputs) {
  // No points: voxelize_backward and devoxelize_backward return empty / zero gradients.
  ops::VoxelizeParams vp;
  vp.voxel_size = ops::Float3{0.5};
  vp.manager = CoordinateManager::create();
  const Array none = Array::zeros(Shape{0, 3}, DType::f32);
  const Array f0 = Array::zeros(Shape{0, 2}, DType::f32);
  const ops::Voxelized fw = ops::voxelize(none, f0, vp);
  EXPECT_EQ(ops::voxelize_backward(fw, f0, fw.tensor, ops::Reduction::mean).dim(0), 0);
  const ops::DevoxelizeParams dp{vp.voxel_size, vp.origin, ops::Interpolation::linear};
  EXPECT_EQ(ops::devoxelize_backward(fw.tensor, none, f0, dp).feats().dim(0), fw.tensor.capacity());
  // Voxels but no query points: a zero gradient on every voxel.
  const Array pts = make_array({0.1, 0.2, 0.3, -1.2, 0.4, 2.0}, Shape{2, 3}, DType::f32);
  const ops::Voxelized v2 = ops::voxelize(pts, make_array({1, 2, 3, 4}, Shape{2, 2}, DType::f32), vp);
  EXPECT_EQ(to_doubles(ops::devoxelize_backward(v2.tensor, none, f0, dp).feats()), (std::vector<double>{0, 0, 0, 0}));
  // Global pooling of an empty tensor (batch_size given): an empty gradient.
  const SparseTensor empty = SparseTensor::from_coords(Array::zeros(Shape{0, 4}, DType::i32),
                                                       Array::zeros(Shape{0, 2}, DType::f32), {.manager = vp.manager});
  EXPECT_EQ(ops::global_pool_backward(empty, Array::zeros(Shape{2, 2}, DType::f32), ops::PoolMode::avg).feats().dim(0),
            0);
}

// ---- errors --------------------------------------------------------------------------

TEST(PoolGradErrors, EveryArgument) {
  auto mgr = CoordinateManager::create();
  Rng rng(81);
  const SparseTensor x = tensor(random_coords(rng, 1, -3, 3, {2, 2, 2}, 0.5), 2, Int3{2}, mgr);
  const SparseTensor y = ops::pool3d(x, ops::PoolMode::sum);
  expect_error<ValueError>(mgr, [&] { ops::pool3d_backward(x, y, static_cast<ops::PoolMode>(7)); },
                           {"[pool3d_backward]", "'mode'", "7"});
  expect_error<TypeError>(
      mgr, [&] { ops::pool3d_backward(x, y.replace_feats(as(y.feats(), DType::f32)), ops::PoolMode::sum); },
      {"[pool3d_backward]", "'dy'", "float32"});
  expect_error<ValueError>(mgr, [&] { ops::pool3d_backward(x, x, ops::PoolMode::sum); },
                           {"[pool3d_backward]", "'dy'", "stride"});
  expect_error<ValueError>(
      mgr,
      [&] {
        ops::pool3d_backward(x, y.replace_feats(Array::zeros(Shape{y.capacity(), 5}, DType::f64)), ops::PoolMode::sum);
      },
      {"[pool3d_backward]", "'dy'", "5 channels"});
  expect_error<ValueError>(mgr, [&] { ops::pool3d_backward(x, SparseTensor(), ops::PoolMode::sum); },
                           {"[pool3d_backward]", "'dy'", "undefined"});
  expect_error<ValueError>(mgr, [&] { ops::pool3d_backward(x, y, ops::PoolMode::sum, {.kernel_size = Int3{0}}); },
                           {"[pool3d_backward]", "kernel_size"});
  // global pooling
  expect_error<ValueError>(mgr,
                           [&] {
                             ops::global_pool_backward(x, Array::zeros(Shape{1, 3}, DType::f64), ops::PoolMode::sum);
                           },
                           {"[global_pool_backward]", "'dy'", "(1, 3)"});
  expect_error<TypeError>(mgr,
                          [&] {
                            ops::global_pool_backward(x, Array::zeros(Shape{1, 2}, DType::f32), ops::PoolMode::sum);
                          },
                          {"[global_pool_backward]", "'dy'", "float32"});
  const SparseTensor xb = tensor({{2, 0, 0, 0}}, 2, Int3{1}, mgr);
  expect_error<ValueError>(mgr,
                           [&] {
                             ops::global_pool_backward(xb, Array::zeros(Shape{2, 2}, DType::f64), ops::PoolMode::avg);
                           },
                           {"[global_pool_backward]", "'dy'", "batch index 2"});
  expect_error<ValueError>(
      mgr,
      [&] {
        ops::global_pool_backward(xb, Array::zeros(Shape{3, 2}, DType::f64), static_cast<ops::PoolMode>(9));
      },
      {"[global_pool_backward]", "'mode'"});
  // pool_transpose3d / trilinear
  const SparseTensor t = ops::pool_transpose3d(x);
  expect_error<ValueError>(mgr, [&] { ops::pool_transpose3d_backward(x, t, {.stride = Int3{4}}); },
                           {"[pool_transpose3d_backward]", "stride"});
  expect_error<ValueError>(mgr, [&] { ops::pool_transpose3d_backward(x, y, {}); },
                           {"[pool_transpose3d_backward]", "'dy'", "stride"});
  const SparseTensor u = ops::trilinear_upsample3d(x);
  expect_error<ValueError>(mgr, [&] { ops::trilinear_upsample3d_backward(x, u, {.stride = Int3{3}}); },
                           {"[trilinear_upsample3d_backward]", "'stride'"});
  expect_error<ValueError>(mgr, [&] { ops::trilinear_upsample3d_backward(x, x, {}); },
                           {"[trilinear_upsample3d_backward]", "'dy'", "stride"});
  expect_error<ValueError>(mgr, [&] { ops::trilinear_upsample3d_backward(x, u, {.stride = Int3{2}, .target = t}); },
                           {"[trilinear_upsample3d_backward]", "'dy'", "key"});
  const SparseTensor other = tensor({{0, 0, 0, 0}}, 2, Int3{1}, CoordinateManager::create());
  expect_error<ValueError>(mgr, [&] { ops::trilinear_upsample3d_backward(x, other, {}); },
                           {"[trilinear_upsample3d_backward]", "'dy'", "manager"});
}

TEST(PointsGradErrors, EveryArgument) {
  Rng rng(91);
  const Cloud pc = cloud(rng, 20, 1, DType::f32);
  ops::VoxelizeParams vp;
  vp.voxel_size = ops::Float3{0.5};
  vp.manager = CoordinateManager::create();
  const ops::Voxelized fw = ops::voxelize(pc.points, make_array(random_values(rng, 40), Shape{20, 2}, DType::f32), vp);
  const SparseTensor& x = fw.tensor;
  const ops::DevoxelizeParams dp{vp.voxel_size, vp.origin, ops::Interpolation::linear};
  const Array dy = Array::zeros(Shape{20, 2}, DType::f32);
  auto mgr = vp.manager;
  expect_error<ValueError>(mgr,
                           [&] {
                             ops::devoxelize_backward(x, pc.points, Array::zeros(Shape{19, 2}, DType::f32), dp);
                           },
                           {"[devoxelize_backward]", "'dy'", "(19, 2)"});
  expect_error<TypeError>(mgr,
                          [&] {
                            ops::devoxelize_backward(x, pc.points, Array::zeros(Shape{20, 2}, DType::f64), dp);
                          },
                          {"[devoxelize_backward]", "'dy'", "float64"});
  expect_error<TypeError>(mgr,
                          [&] {
                            ops::devoxelize_backward(x, Array::zeros(Shape{20, 3}, DType::i32), dy, dp);
                          },
                          {"[devoxelize_backward]", "'points'", "int32"});
  expect_error<ValueError>(mgr, [&] { ops::devoxelize_backward(x, pc.points, dy, dp, fw.inverse_rows); },
                           {"[devoxelize_backward]", "'point_voxel_map'", "nearest"});
  expect_error<ValueError>(
      mgr,
      [&] {
        ops::devoxelize_backward(x, pc.points, dy, {ops::Float3{0.0}, {}, ops::Interpolation::linear});
      },
      {"[devoxelize_backward]", "'voxel_size'"});
  // voxelize_backward
  const Array f = make_array(random_values(rng, 40), Shape{20, 2}, DType::f32);
  expect_error<ValueError>(mgr, [&] { ops::voxelize_backward(fw, f, x, static_cast<ops::Reduction>(5)); },
                           {"[voxelize_backward]", "'reduction'"});
  expect_error<ValueError>(
      mgr,
      [&] {
        ops::voxelize_backward(fw, Array::zeros(Shape{19, 2}, DType::f32), x, ops::Reduction::mean);
      },
      {"[voxelize_backward]", "'feats'", "(19, 2)"});
  const SparseTensor pooled = ops::pool3d(x, ops::PoolMode::sum);
  expect_error<ValueError>(mgr, [&] { ops::voxelize_backward(fw, f, pooled, ops::Reduction::mean); },
                           {"[voxelize_backward]", "'dy'", "key"});
  expect_error<TypeError>(mgr, [&] { ops::voxelize_backward(fw, as(f, DType::f64), x, ops::Reduction::mean); },
                          {"[voxelize_backward]", "'dy'", "float32"});
}

}  // namespace
}  // namespace lattice::testing

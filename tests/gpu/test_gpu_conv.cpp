// GPU suite, convolution and relations: every conv kind x dtype x route x
// shape on CUDA against the CPU route in float64; relations and their views
// identical to the CPU's (same deterministic order); K = 125; odd channels;
// empty inputs; batch > 1; a 10^6-voxel input.
#include <sstream>

#include <gtest/gtest.h>

#include "gpu/gpu_harness.hpp"
#include "lattice/core/relation.hpp"
#include "lattice/ops/conv.hpp"
#include "lattice/ops/voxelize.hpp"
#include "lattice/sim/lidar_scene.hpp"

namespace lattice::testing::gpu {
namespace {

enum class Kind { forward, target, subm, transposed, target_transposed, generative, pointwise };

struct Case {
  Kind kind;
  DType dtype;
  ops::ConvRoute route;
  int cin, cout, k, r;
  int batches;
  int box;  // coordinates in [-box, box)
  double density;
  bool bias = true;
  bool tf32 = false;
};

std::string kind_name(Kind k) {
  const char* names[] = {"forward", "target", "subm", "transposed", "target_transposed", "generative", "pointwise"};
  return names[static_cast<int>(k)];
}

std::string name(const Case& c) {
  std::ostringstream os;
  os << kind_name(c.kind) << "_" << dtype_name(c.dtype) << "_" << ops::route_name(c.route) << "_c" << c.cin << "_"
     << c.cout << "_k" << c.k << "_s" << c.r << "_b" << c.batches << "_n" << c.box << (c.tf32 ? "_tf32" : "");
  return os.str();
}

std::vector<Case> cases() {
  using R = ops::ConvRoute;
  std::vector<Case> out;
  const std::vector<Kind> kinds{Kind::forward,           Kind::target,     Kind::subm,     Kind::transposed,
                                Kind::target_transposed, Kind::generative, Kind::pointwise};
  const std::vector<DType> dtypes{DType::f32, DType::f16, DType::bf16, DType::f64};
  const std::vector<R> routes{R::automatic, R::implicit_gemm, R::sorted_implicit_gemm, R::gather_gemm_scatter};
  // Odd channels take the general (SIMT) kernel; multiples of 8 take the tensor-core kernel in 16-bit.
  const std::vector<std::pair<int, int>> channels{{3, 16}, {33, 3}, {16, 32}, {64, 64}, {32, 128}, {128, 96}};
  int i = 0;
  for (Kind kind : kinds) {
    for (DType dtype : dtypes) {
      for (R route : routes) {
        if (kind == Kind::pointwise && route != R::automatic) continue;
        const auto [cin, cout] = channels[static_cast<std::size_t>(i) % channels.size()];
        const int k = kind == Kind::subm ? (i % 3 == 2 ? 5 : 3) : (kind == Kind::pointwise ? 1 : (i % 2 ? 3 : 2));
        const int r = (kind == Kind::subm || kind == Kind::pointwise) ? 1 : 2;
        out.push_back({kind, dtype, route, cin, cout, k, r, i % 3 == 0 ? 3 : 1, 10, 0.15, i % 4 != 1, false});
        ++i;
      }
    }
  }
  // TF32 (opt-in) on the cuBLAS route, K = 125, empty inputs, large channel counts.
  out.push_back({Kind::subm, DType::f32, R::gather_gemm_scatter, 64, 64, 3, 1, 2, 12, 0.2, true, true});
  out.push_back({Kind::subm, DType::f16, R::automatic, 32, 32, 5, 1, 2, 14, 0.2, true, false});
  out.push_back({Kind::subm, DType::f32, R::automatic, 16, 16, 5, 1, 1, 14, 0.2, true, false});
  out.push_back({Kind::forward, DType::f16, R::automatic, 16, 16, 3, 2, 1, 6, 0.0, true, false});
  out.push_back({Kind::subm, DType::bf16, R::sorted_implicit_gemm, 256, 256, 3, 1, 1, 12, 0.2, true, false});
  return out;
}

class GpuConv : public GpuParamTest<Case> {};

TEST_P(GpuConv, MatchesCpuFloat64PerElement) {
  const Case c = GetParam();
  Rng rng(std::hash<std::string>{}(name(c)));
  const I3 in_stride = (c.kind == Kind::transposed || c.kind == Kind::target_transposed || c.kind == Kind::generative)
                           ? I3{c.r, c.r, c.r}
                           : I3{1, 1, 1};
  const std::vector<Coord> coords = random_coords(rng, c.batches, -c.box, c.box - 1, in_stride, c.density);
  const auto n = static_cast<std::int64_t>(coords.size());
  const std::int64_t volume = std::int64_t{c.k} * c.k * c.k;
  const Array feats = make_array(random_values(rng, static_cast<std::size_t>(n * c.cin)), Shape{n, c.cin}, c.dtype);
  const Array weight = make_array(random_values(rng, static_cast<std::size_t>(volume * c.cin * c.cout)),
                                  Shape{volume, c.cin, c.cout}, c.dtype);
  std::optional<Array> bias;
  if (c.bias) bias = make_array(random_values(rng, static_cast<std::size_t>(c.cout)), Shape{c.cout}, c.dtype);
  const Int3 stride{in_stride[0], in_stride[1], in_stride[2]};

  auto cpu_manager = CoordinateManager::create(), gpu_manager = CoordinateManager::create();
  const SparseTensor x64 = SparseTensor::from_coords(coords_array(coords), feats.astype(DType::f64),
                                                     {.stride = stride, .manager = cpu_manager});
  const SparseTensor xabs = x64.replace_feats(abs64(feats));
  const SparseTensor xg = SparseTensor::from_coords(coords_array(coords).to(k_gpu), feats.to(k_gpu),
                                                    {.stride = stride, .manager = gpu_manager});
  // Target supports: the coarse / fine lattice of a random subset.
  std::vector<Coord> target;
  if (c.kind == Kind::target || c.kind == Kind::target_transposed) {
    const int ts = c.kind == Kind::target ? c.r : 1;
    target = random_coords(rng, c.batches, -c.box / ts - 1, c.box / ts, {ts, ts, ts}, 0.3);
  }
  auto run = [&](const SparseTensor& x, const Array& w, const std::optional<Array>& b,
                 const ops::TargetCoords& t) -> SparseTensor {
    switch (c.kind) {
      case Kind::forward:
        return ops::conv3d(x, w, b, {.kernel_size = c.k, .stride = c.r, .route = c.route, .allow_tf32 = c.tf32});
      case Kind::target:
        return ops::conv3d(
            x, w, b, {.kernel_size = c.k, .stride = c.r, .coordinates = t, .route = c.route, .allow_tf32 = c.tf32});
      case Kind::subm:
        return ops::subm_conv3d(x, w, b, {.kernel_size = c.k, .route = c.route, .allow_tf32 = c.tf32});
      case Kind::transposed:
        return ops::conv_transpose3d(x, w, b,
                                     {.kernel_size = c.k, .stride = c.r, .route = c.route, .allow_tf32 = c.tf32});
      case Kind::target_transposed:
        return ops::conv_transpose3d(
            x, w, b, {.kernel_size = c.k, .stride = c.r, .coordinates = t, .route = c.route, .allow_tf32 = c.tf32});
      case Kind::generative:
        return ops::generative_conv_transpose3d(
            x, w, b, {.kernel_size = c.k, .stride = c.r, .route = c.route, .allow_tf32 = c.tf32});
      case Kind::pointwise:
        return ops::conv3d(x, w, b, {.kernel_size = 1, .route = c.route, .allow_tf32 = c.tf32});
    }
    return {};
  };
  const Array target_host = coords_array(target);
  const SparseTensor ref =
      run(x64, weight.astype(DType::f64), bias ? std::optional(bias->astype(DType::f64)) : std::nullopt,
          target.empty() ? ops::TargetCoords{} : ops::TargetCoords{target_host});
  const SparseTensor mag = run(xabs, abs64(weight), bias ? std::optional(abs64(*bias)) : std::nullopt,
                               target.empty() ? ops::TargetCoords{} : ops::TargetCoords{target_host});
  poison_pool();
  const SparseTensor y = run(xg, weight.to(k_gpu), bias ? std::optional(bias->to(k_gpu)) : std::nullopt,
                             target.empty() ? ops::TargetCoords{} : ops::TargetCoords{target_host.to(k_gpu)});
  ASSERT_EQ(y.device(), k_gpu);
  const std::int64_t rows = y.rows();
  ASSERT_EQ(rows, ref.rows()) << name(c);
  EXPECT_EQ(coords_from_array(y.coords(), rows), coords_from_array(ref.coords(), rows))
      << "support or its order differs";
  EXPECT_EQ(y.stride(), ref.stride());
  const std::string report = compare_rows(y.feats(), rows, to_doubles(ref.feats().rows(0, rows)),
                                          to_doubles(mag.feats().rows(0, rows)), c.dtype, c.tf32);
  EXPECT_TRUE(report.empty()) << name(c) << "\n" << report;
  // Deterministic: a second run is bitwise identical.
  const SparseTensor y2 = run(xg, weight.to(k_gpu), bias ? std::optional(bias->to(k_gpu)) : std::nullopt,
                              target.empty() ? ops::TargetCoords{} : ops::TargetCoords{target_host.to(k_gpu)});
  EXPECT_EQ(to_doubles(y2.feats().rows(0, rows)), to_doubles(y.feats().rows(0, rows))) << "run-to-run difference";
}

INSTANTIATE_TEST_SUITE_P(AllKinds, GpuConv, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return std::to_string(info.index) + "_" + name(info.param); });

// ---- fused epilogue: every kernel family against the CPU in float64 ----------------

struct EpiCase {
  DType dtype;
  ops::ConvRoute route;
  int cin, cout, k;
};

class GpuEpilogue : public GpuParamTest<EpiCase> {};

TEST_P(GpuEpilogue, MatchesTheCpu) {
  const EpiCase c = GetParam();
  Rng rng(static_cast<std::uint64_t>(c.cin * 1000 + c.cout * 10 + c.k));
  const auto coords = random_coords(rng, 2, -9, 8, {1, 1, 1}, 0.2);
  const auto n = static_cast<std::int64_t>(coords.size());
  const std::int64_t vol = std::int64_t{c.k} * c.k * c.k;
  const Array feats = make_array(random_values(rng, static_cast<std::size_t>(n * c.cin)), Shape{n, c.cin}, c.dtype);
  const Array w = make_array(random_values(rng, static_cast<std::size_t>(vol * c.cin * c.cout)),
                             Shape{vol, c.cin, c.cout}, c.dtype);
  const Array b = make_array(random_values(rng, c.cout), Shape{c.cout}, c.dtype);
  const Array scale = make_array(random_values(rng, c.cout), Shape{c.cout}, DType::f32);
  const Array shift = make_array(random_values(rng, c.cout), Shape{c.cout}, DType::f32);
  const Array res = make_array(random_values(rng, static_cast<std::size_t>(n * c.cout)), Shape{n, c.cout}, c.dtype);
  auto mc = CoordinateManager::create(), mg = CoordinateManager::create();
  const SparseTensor xc = SparseTensor::from_coords(coords_array(coords), feats.astype(DType::f64), {.manager = mc});
  const SparseTensor xg = SparseTensor::from_coords(coords_array(coords).to(k_gpu), feats.to(k_gpu), {.manager = mg});
  auto run = [&](const SparseTensor& x, const Array& ww, const Array& bb, const Array& sc, const Array& sh,
                 const Array& r, bool relu) {
    const ops::ConvEpilogue e{sc, sh, x.replace_feats(r), relu};
    if (c.k == 1) return ops::conv3d(x, ww, bb, {.kernel_size = 1, .route = c.route, .epilogue = e});
    return ops::subm_conv3d(x, ww, bb, {.kernel_size = c.k, .route = c.route, .epilogue = e});
  };
  const SparseTensor ref =
      run(xc, w.astype(DType::f64), b.astype(DType::f64), scale, shift, res.astype(DType::f64), true);
  // Magnitude: the same pass on absolute values, without the ReLU.
  const SparseTensor mag = run(xc.replace_feats(abs64(feats)), abs64(w), abs64(b), abs64(scale).astype(DType::f32),
                               abs64(shift).astype(DType::f32), abs64(res), false);
  poison_pool();
  const SparseTensor y = run(xg, w.to(k_gpu), b.to(k_gpu), scale.to(k_gpu), shift.to(k_gpu), res.to(k_gpu), true);
  const std::string report = compare_rows(y.feats(), n, to_doubles(ref.feats()), to_doubles(mag.feats()), c.dtype);
  EXPECT_TRUE(report.empty()) << report;
}

INSTANTIATE_TEST_SUITE_P(Kernels, GpuEpilogue,
                         ::testing::Values(EpiCase{DType::f16, ops::ConvRoute::sorted_implicit_gemm, 32, 64, 3},
                                           EpiCase{DType::bf16, ops::ConvRoute::implicit_gemm, 64, 128, 3},
                                           EpiCase{DType::f32, ops::ConvRoute::automatic, 16, 16, 3},
                                           EpiCase{DType::f32, ops::ConvRoute::automatic, 3, 5, 3},
                                           EpiCase{DType::f64, ops::ConvRoute::automatic, 8, 8, 3},
                                           EpiCase{DType::f16, ops::ConvRoute::gather_gemm_scatter, 16, 24, 3},
                                           EpiCase{DType::f16, ops::ConvRoute::automatic, 32, 96, 1}),
                         [](const auto& info) {
                           return std::to_string(info.index) + "_" + std::string(dtype_name(info.param.dtype));
                         });

// ---- relations and views: identical to the CPU's ---------------------------------

struct RelCase {
  RelationKind kind;
  int k, r;
};

class GpuRelation : public GpuParamTest<RelCase> {};

template <class T>
std::vector<T> head(const Array& a, std::int64_t n) {
  auto v = a.to(Device::cpu()).to_vector<T>();
  v.resize(static_cast<std::size_t>(n));
  return v;
}

TEST_P(GpuRelation, EdgesAndViewsEqualTheCpu) {
  const RelCase c = GetParam();
  Rng rng(static_cast<std::uint64_t>(c.k * 100 + c.r * 10 + static_cast<int>(c.kind)));
  const bool transposed = is_transposed_kind(c.kind);
  const I3 s = transposed ? I3{c.r, c.r, c.r} : I3{1, 1, 1};
  const auto coords = random_coords(rng, 2, -9, 8, s, 0.2);
  const auto n = static_cast<std::int64_t>(coords.size());
  auto mc = CoordinateManager::create(), mg = CoordinateManager::create();
  const Int3 stride{s[0], s[1], s[2]};
  const SparseTensor xc = SparseTensor::from_coords(coords_array(coords), Array::zeros(Shape{n, 1}, DType::f32),
                                                    {.stride = stride, .manager = mc});
  const SparseTensor xg = SparseTensor::from_coords(
      coords_array(coords).to(k_gpu), Array::zeros(Shape{n, 1}, DType::f32, k_gpu), {.stride = stride, .manager = mg});
  const KernelSpec spec{Int3{c.k}, Int3{c.kind == RelationKind::submanifold ? 1 : c.r}, Int3{0}, Int3{1}};
  auto rc = mc->relation(xc.coordinate_set(), c.kind, spec, nullptr, "test");
  auto rg = mg->relation(xg.coordinate_set(), c.kind, spec, nullptr, "test");
  const std::int64_t ne = rc->num_edges();
  ASSERT_EQ(rg->num_edges(), ne);
  ASSERT_EQ(rg->output()->rows(), rc->output()->rows());
  const std::int64_t no = rc->output()->rows();
  EXPECT_EQ(head<std::int32_t>(rg->output()->coords(), 4 * no), head<std::int32_t>(rc->output()->coords(), 4 * no));
  EXPECT_EQ(head<std::int32_t>(rg->in_rows(), ne), head<std::int32_t>(rc->in_rows(), ne));
  EXPECT_EQ(head<std::int32_t>(rg->out_rows(), ne), head<std::int32_t>(rc->out_rows(), ne));
  EXPECT_EQ(head<std::int32_t>(rg->kernel_ids(), ne), head<std::int32_t>(rc->kernel_ids(), ne));
  EXPECT_EQ(head<std::int32_t>(rg->output_csr().row_offsets, no + 1),
            head<std::int32_t>(rc->output_csr().row_offsets, no + 1));
  EXPECT_EQ(head<std::int32_t>(rg->input_csr().offsets, n + 1), head<std::int32_t>(rc->input_csr().offsets, n + 1));
  EXPECT_EQ(head<std::int32_t>(rg->input_csr().edge_ids, ne), head<std::int32_t>(rc->input_csr().edge_ids, ne));
  const std::int64_t volume = spec.volume();
  EXPECT_EQ(head<std::int32_t>(rg->kernel_csr().offsets, volume + 1),
            head<std::int32_t>(rc->kernel_csr().offsets, volume + 1));
  EXPECT_EQ(head<std::int32_t>(rg->kernel_csr().edge_ids, ne), head<std::int32_t>(rc->kernel_csr().edge_ids, ne));
  const int words = rc->implicit_gemm_map().mask_words;
  EXPECT_EQ(head<std::int32_t>(rg->implicit_gemm_map().out_in_map, no * volume),
            head<std::int32_t>(rc->implicit_gemm_map().out_in_map, no * volume));
  EXPECT_EQ(head<std::uint32_t>(rg->implicit_gemm_map().masks, no * words),
            head<std::uint32_t>(rc->implicit_gemm_map().masks, no * words));
  EXPECT_EQ(head<std::int32_t>(rg->input_gemm_map().in_out_map, n * volume),
            head<std::int32_t>(rc->input_gemm_map().in_out_map, n * volume));
  EXPECT_EQ(head<std::uint32_t>(rg->input_gemm_map().masks, n * words),
            head<std::uint32_t>(rc->input_gemm_map().masks, n * words));
  const auto& sg = rg->sorted_implicit_gemm_map(64);
  const auto& sc = rc->sorted_implicit_gemm_map(64);
  EXPECT_EQ(head<std::int32_t>(sg.perm, no), head<std::int32_t>(sc.perm, no));
  EXPECT_EQ(head<std::int32_t>(sg.sorted_map, no * volume), head<std::int32_t>(sc.sorted_map, no * volume));
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, GpuRelation,
    ::testing::Values(RelCase{RelationKind::submanifold, 3, 1}, RelCase{RelationKind::submanifold, 5, 1},
                      RelCase{RelationKind::forward, 2, 2}, RelCase{RelationKind::forward, 3, 2},
                      RelCase{RelationKind::transposed, 2, 2}, RelCase{RelationKind::transposed, 3, 2},
                      RelCase{RelationKind::generative, 2, 2}, RelCase{RelationKind::generative, 3, 1}),
    [](const auto& info) {
      return std::string(relation_kind_name(info.param.kind)) + "_k" + std::to_string(info.param.k) + "_s" +
             std::to_string(info.param.r);
    });

// ---- large input and device errors ------------------------------------------------------

class GpuLarge : public GpuTest {};

TEST_F(GpuLarge, MillionVoxelSubmanifoldConvolution) {
  // Twelve aggregated sweeps of the built-in scene at 2 cm: over 10^6 voxels.
  const io::PointCloud scan = sim::simulate_lidar_scan({.seed = 3, .sweeps = 12});
  auto mc = CoordinateManager::create(), mg = CoordinateManager::create();
  const ops::Voxelized vc = ops::voxelize(scan.positions, std::nullopt, {.voxel_size = 0.02, .manager = mc});
  const std::int64_t n = vc.tensor.rows();
  ASSERT_GT(n, 1'000'000);
  Rng rng(5);
  const int c = 16;
  const Array feats = make_array(random_values(rng, static_cast<std::size_t>(n * c)), Shape{n, c}, DType::f16);
  const Array w = make_array(random_values(rng, static_cast<std::size_t>(27 * c * c)), Shape{27, c, c}, DType::f16);
  const SparseTensor x64 = vc.tensor.replace_feats(feats.astype(DType::f64));
  const SparseTensor ref = ops::subm_conv3d(x64, w.astype(DType::f64));
  const SparseTensor mag = ops::subm_conv3d(x64.replace_feats(abs64(feats)), abs64(w));
  const SparseTensor xg = SparseTensor::from_coords(vc.tensor.coords().to(k_gpu), feats.to(k_gpu), {.manager = mg});
  poison_pool();
  const SparseTensor y = ops::subm_conv3d(xg, w.to(k_gpu));
  const std::string report = compare_rows(y.feats(), n, to_doubles(ref.feats()), to_doubles(mag.feats()), DType::f16);
  EXPECT_TRUE(report.empty()) << report;
}

TEST_F(GpuLarge, DeviceErrorsSurfaceAtTheNextHostFacingCall) {
  auto m = CoordinateManager::create();
  // A transposed output outside the key range is found by the kernel.
  const SparseTensor x =
      SparseTensor::from_coords(Array::from_vector(std::vector<std::int32_t>{0, 0, 0, 131071}, Shape{1, 4}).to(k_gpu),
                                Array::zeros(Shape{1, 1}, DType::f32, k_gpu), {.manager = m});
  const SparseTensor y = ops::conv_transpose3d(x, Array::zeros(Shape{27, 1, 1}, DType::f32, k_gpu), std::nullopt,
                                               {.kernel_size = 3, .stride = 1});
  EXPECT_THROW(synchronize(k_gpu), ValueError);
  synchronize(k_gpu);  // the error was reported once and cleared
  // Duplicates in device coordinates.
  const Array dup = Array::from_vector(std::vector<std::int32_t>{0, 1, 1, 1, 0, 1, 1, 1}, Shape{2, 4}).to(k_gpu);
  const SparseTensor d = SparseTensor::from_coords(dup, Array::zeros(Shape{2, 1}, DType::f32, k_gpu), {.manager = m});
  try {
    d.feats().to(Device::cpu());
    FAIL() << "expected the duplicate to be reported";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("[SparseTensor] argument 'coords'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lattice::testing::gpu

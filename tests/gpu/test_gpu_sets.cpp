// GPU suite, sparse algebra and coordinate sets: every CUDA route against the
// CPU route on the same inputs. Integer and index outputs must be identical;
// float outputs too (one IEEE operation per element, same expression on both
// backends), compared NaN-safe. Inputs carry capacity rows beyond the active
// rows (holding garbage) so that kernels bounded by capacity instead of the
// device count fail. Also: run-to-run bitwise determinism and the sticky
// device errors.
#include <cmath>
#include <limits>

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include "gpu/gpu_harness.hpp"
#include "lattice/ops/algebra.hpp"
#include "lattice/ops/coordinate_sets.hpp"
#include "support/expect_error.hpp"

namespace lattice::testing::gpu {
namespace {

using ops::BinaryOp;
using ops::Join;

constexpr double k_inf = std::numeric_limits<double>::infinity();

struct Managers {
  std::shared_ptr<CoordinateManager> cpu = CoordinateManager::create();
  std::shared_ptr<CoordinateManager> gpu = CoordinateManager::create();
};

struct Pair {
  SparseTensor cpu, gpu;
};

// Random unique coordinates (stride s) with `extra` capacity rows after the
// active ones; capacity rows repeat active coordinates (never matched) and
// hold features 1e4.
Pair random_pair(Managers& m, std::uint64_t seed, int batches, int lo, int hi, double density, int ch, DType dtype,
                 Int3 s = Int3{1}, int extra = 3) {
  Rng rng(seed);
  auto coords = random_coords(rng, batches, lo, hi, {s.x, s.y, s.z}, density);
  const auto rows = static_cast<std::int64_t>(coords.size());
  for (int e = 0; e < extra && rows > 0; ++e) coords.push_back(coords[static_cast<std::size_t>(e % rows)]);
  if (rows == 0) {
    for (int e = 0; e < extra; ++e) coords.push_back({0, 0, 0, 0});
  }
  const auto cap = static_cast<std::int64_t>(coords.size());
  std::vector<double> v = random_values(rng, static_cast<std::size_t>(cap * ch));
  for (std::size_t i = static_cast<std::size_t>(rows * ch); i < v.size(); ++i) v[i] = 1e4;
  const Array feats = make_array(v, Shape{cap, ch}, dtype);
  const SparseTensorOptions o_cpu{.stride = s, .manager = m.cpu, .active_rows = rows};
  const SparseTensorOptions o_gpu{.stride = s, .manager = m.gpu, .active_rows = rows};
  return {SparseTensor::from_coords(coords_array(coords), feats, o_cpu),
          SparseTensor::from_coords(coords_array(coords).to(k_gpu), feats.to(k_gpu), o_gpu)};
}

bool same_value(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

// Same active rows, coordinates and features (NaN-safe exact).
void expect_same_tensor(const SparseTensor& cpu, const SparseTensor& gpu) {
  const std::int64_t rows = cpu.rows();
  ASSERT_EQ(gpu.rows(), rows);
  EXPECT_EQ(gpu.stride(), cpu.stride());
  EXPECT_EQ(gpu.channels(), cpu.channels());
  EXPECT_EQ(coords_from_array(gpu.coords(), rows), coords_from_array(cpu.coords(), rows));
  if (cpu.channels() == 0) return;
  const auto a = to_doubles(cpu.feats().rows(0, rows));
  const auto b = to_doubles(gpu.feats().rows(0, rows).to(Device::cpu()));
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(same_value(a[i], b[i])) << "element " << i << ": cpu " << a[i] << " cuda " << b[i];
  }
}

std::vector<std::int32_t> head(const Array& a, std::int64_t n) {
  auto v = a.to_vector<std::int32_t>();
  v.resize(static_cast<std::size_t>(n));
  return v;
}

class GpuSparseBinary : public GpuParamTest<DType> {};

TEST_P(GpuSparseBinary, EveryOpJoinFillMatchesTheCpu) {
  const DType dtype = GetParam();
  std::uint64_t seed = 0;
  for (BinaryOp op : {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::maximum, BinaryOp::minimum}) {
    for (Join join : {Join::inner, Join::outer, Join::left}) {
      for (auto [lf, rf] : std::vector<std::pair<double, double>>{{0, 0}, {1.5, -2}, {k_inf, -k_inf}}) {
        SCOPED_TRACE(std::string(ops::binary_op_name(op)) + " " + std::string(ops::join_name(join)) + " " +
                     std::to_string(lf));
        Managers m;
        ++seed;
        const int ch = 1 + static_cast<int>(seed % 37);
        const Pair l = random_pair(m, seed, 3, -6, 6, 0.2, ch, dtype);
        const Pair r = random_pair(m, seed + 1000, 3, -6, 6, 0.2, ch, dtype);
        poison_pool(16 << 20);
        const ops::BinaryParams p{.join = join, .lhs_fill = lf, .rhs_fill = rf};
        expect_same_tensor(ops::sparse_binary(op, l.cpu, r.cpu, p), ops::sparse_binary(op, l.gpu, r.gpu, p));
      }
    }
  }
}

TEST_P(GpuSparseBinary, SameKeyOperatorsEmptyAndOneRow) {
  const DType dtype = GetParam();
  Managers m;
  const Pair a = random_pair(m, 1, 2, -5, 5, 0.3, 8, dtype);
  const Pair b = random_pair(m, 2, 2, -5, 5, 0.3, 8, dtype);
  expect_same_tensor(a.cpu + b.cpu, a.gpu + b.gpu);
  expect_same_tensor(a.cpu - b.cpu, a.gpu - b.gpu);
  expect_same_tensor(a.cpu * b.cpu, a.gpu * b.gpu);
  const SparseTensor a2c = a.cpu.replace_feats(ops::reindex_sparse(b.cpu, a.cpu, 3.0).feats());
  const SparseTensor a2g = a.gpu.replace_feats(ops::reindex_sparse(b.gpu, a.gpu, 3.0).feats());
  expect_same_tensor(ops::sparse_binary(BinaryOp::maximum, a.cpu, a2c),
                     ops::sparse_binary(BinaryOp::maximum, a.gpu, a2g));
  const Pair e = random_pair(m, 3, 1, 0, 0, 0.0, 8, dtype);    // no active rows, capacity 3
  const Pair one = random_pair(m, 4, 1, 0, 0, 1.0, 8, dtype);  // one row
  for (Join join : {Join::inner, Join::outer, Join::left}) {
    const ops::BinaryParams p{.join = join, .lhs_fill = 2, .rhs_fill = -1};
    expect_same_tensor(ops::sparse_binary(BinaryOp::sub, e.cpu, a.cpu, p),
                       ops::sparse_binary(BinaryOp::sub, e.gpu, a.gpu, p));
    expect_same_tensor(ops::sparse_binary(BinaryOp::sub, a.cpu, e.cpu, p),
                       ops::sparse_binary(BinaryOp::sub, a.gpu, e.gpu, p));
    expect_same_tensor(ops::sparse_binary(BinaryOp::mul, one.cpu, a.cpu, p),
                       ops::sparse_binary(BinaryOp::mul, one.gpu, a.gpu, p));
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, GpuSparseBinary, ::testing::Values(DType::f32, DType::f16, DType::bf16, DType::f64),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

class GpuSets : public GpuTest {};

TEST_F(GpuSets, AlignMapsGatherAndReindexMatchTheCpu) {
  for (Join join : {Join::inner, Join::outer, Join::left}) {
    Managers m;
    const Pair l = random_pair(m, 10, 4, -4, 4, 0.3, 5, DType::f32, Int3{2, 1, 2});
    const Pair r = random_pair(m, 11, 4, -4, 4, 0.3, 5, DType::f32, Int3{2, 1, 2});
    const auto ac = ops::align_sparse(l.cpu, r.cpu, join);
    const auto ag = ops::align_sparse(l.gpu, r.gpu, join);
    const std::int64_t n = ac.coords.rows();
    ASSERT_EQ(ag.coords.rows(), n);
    EXPECT_EQ(coords_from_array(ag.coords.coords(), n), coords_from_array(ac.coords.coords(), n));
    EXPECT_EQ(head(ag.lhs_rows, n), head(ac.lhs_rows, n));
    EXPECT_EQ(head(ag.rhs_rows, n), head(ac.rhs_rows, n));
    for (std::int32_t v : ag.lhs_rows.to_vector<std::int32_t>()) EXPECT_GE(v, -1);
    const auto tail = ag.rhs_rows.to_vector<std::int32_t>();
    for (std::size_t i = static_cast<std::size_t>(n); i < tail.size(); ++i) EXPECT_EQ(tail[i], -1);
    const Array gc = ops::gather_aligned_features(r.cpu, ac.rhs_rows, -k_inf);
    const Array gg = ops::gather_aligned_features(r.gpu, ag.rhs_rows, -k_inf);
    EXPECT_EQ(to_doubles(gg.rows(0, n).to(Device::cpu())), to_doubles(gc.rows(0, n)));
    expect_same_tensor(ops::reindex_sparse(l.cpu, r.cpu, 0.5), ops::reindex_sparse(l.gpu, r.gpu, 0.5));
    // Same key: the identity map, -1 on capacity rows.
    const auto self_c = ops::align_sparse(l.cpu, l.cpu, join), self_g = ops::align_sparse(l.gpu, l.gpu, join);
    EXPECT_EQ(self_g.coords.key(), l.gpu.key());
    EXPECT_EQ(self_g.lhs_rows.to_vector<std::int32_t>(), self_c.lhs_rows.to_vector<std::int32_t>());
    EXPECT_EQ(self_g.rhs_rows.to_vector<std::int32_t>(), self_c.rhs_rows.to_vector<std::int32_t>());
  }
}

TEST_F(GpuSets, CoordinateSetOpsMatchTheCpu) {
  std::uint64_t seed = 20;
  for (Int3 s : {Int3{1}, Int3{2, 1, 3}}) {
    for (Int3 r : {Int3{2}, Int3{1, 2, 3}}) {
      Managers m;
      const Pair a = random_pair(m, ++seed, 3, -8, 8, 0.05, 2, DType::f16, s);
      const Pair b = random_pair(m, ++seed, 3, -8, 8, 0.05, 2, DType::f16, s);
      poison_pool(16 << 20);
      const SparseTensor dc = ops::downsample_coords(a.cpu, r), dg = ops::downsample_coords(a.gpu, r);
      expect_same_tensor(dc, dg);
      expect_same_tensor(ops::union_coords(a.cpu, b.cpu), ops::union_coords(a.gpu, b.gpu));
      expect_same_tensor(ops::intersection_coords(a.cpu, b.cpu), ops::intersection_coords(a.gpu, b.gpu));
      EXPECT_EQ(head(ops::inverse_map(a.gpu, dg), a.cpu.rows()), head(ops::inverse_map(a.cpu, dc), a.cpu.rows()));
      // Queries: b's rows plus off-lattice, out-of-range and bad-batch coordinates.
      auto q = coords_from_array(b.cpu.coords(), b.cpu.rows());
      const auto qa = coords_from_array(a.cpu.coords(), a.cpu.rows());
      q.insert(q.end(), qa.begin(), qa.end());
      q.push_back({0, 1, 1, 1});
      q.push_back({1023, 0, 0, 0});
      q.push_back({-5, 0, 0, 0});
      q.push_back({0, 1 << 30, 0, 0});
      const Array qc = coords_array(q);
      EXPECT_EQ(ops::lookup_coords(a.gpu, qc.to(k_gpu)).to_vector<std::int32_t>(),
                ops::lookup_coords(a.cpu, qc).to_vector<std::int32_t>());
      EXPECT_EQ(ops::contains_coords(a.gpu, qc.to(k_gpu)).to_vector<std::uint8_t>(),
                ops::contains_coords(a.cpu, qc).to_vector<std::uint8_t>());
    }
  }
}

TEST_F(GpuSets, MortonMatchesTheCpu) {
  Managers m;
  for (int extra : {0, 5}) {
    const Pair x = random_pair(m, 40 + extra, 5, -20, 20, 0.01, 3, DType::f32, Int3{2}, extra);
    const std::int64_t n = x.cpu.rows();
    auto codes_c = ops::morton_codes(x.cpu).to_vector<std::int64_t>();
    auto codes_g = ops::morton_codes(x.gpu).to_vector<std::int64_t>();
    EXPECT_EQ(codes_g, codes_c);
    EXPECT_EQ(ops::morton_order(x.gpu).to_vector<std::int32_t>(), ops::morton_order(x.cpu).to_vector<std::int32_t>());
    const SparseTensor sc = ops::morton_sort_coords(x.cpu), sg = ops::morton_sort_coords(x.gpu);
    ASSERT_EQ(sg.rows(), n);
    expect_same_tensor(sc, sg);
  }
  Rng rng(5);
  std::vector<Coord> raw{{1023, -131072, 131071, 0}, {0, 0, 0, 0}};
  for (int i = 0; i < 5000; ++i) {
    raw.push_back({static_cast<int>(rng.integer(0, 1023)), static_cast<int>(rng.integer(-131072, 131071)),
                   static_cast<int>(rng.integer(-131072, 131071)), static_cast<int>(rng.integer(-131072, 131071))});
  }
  EXPECT_EQ(ops::morton_codes(coords_array(raw).to(k_gpu), Int3{1}).to_vector<std::int64_t>(),
            ops::morton_codes(coords_array(raw), Int3{1}).to_vector<std::int64_t>());
  EXPECT_EQ(ops::morton_codes(coords_array({}).to(k_gpu), Int3{1}).dim(0), 0);
}

TEST_F(GpuSets, LargeInputsMatchTheCpu) {
  // ~150k rows each: many blocks, grid-stride loops and multi-pass scans.
  Managers m;
  const Pair a = random_pair(m, 80, 4, -20, 20, 0.5, 4, DType::f32, Int3{1}, 7);
  const Pair b = random_pair(m, 81, 4, -20, 20, 0.5, 4, DType::f32, Int3{1}, 7);
  ASSERT_GT(a.cpu.rows(), 100000);
  for (Join join : {Join::inner, Join::outer, Join::left}) {
    expect_same_tensor(ops::sparse_binary(BinaryOp::sub, a.cpu, b.cpu, {.join = join, .lhs_fill = 3}),
                       ops::sparse_binary(BinaryOp::sub, a.gpu, b.gpu, {.join = join, .lhs_fill = 3}));
  }
  const SparseTensor dc = ops::downsample_coords(a.cpu, Int3{4}), dg = ops::downsample_coords(a.gpu, Int3{4});
  expect_same_tensor(dc, dg);
  EXPECT_EQ(head(ops::inverse_map(a.gpu, dg), a.cpu.rows()), head(ops::inverse_map(a.cpu, dc), a.cpu.rows()));
  expect_same_tensor(ops::morton_sort_coords(a.cpu), ops::morton_sort_coords(a.gpu));
}

TEST_F(GpuSets, OpsCaptureIntoACudaGraph) {
  // Capture mode "global": any host synchronisation inside the ops makes capture fail.
  Managers m;
  const Pair a = random_pair(m, 90, 2, -6, 6, 0.3, 8, DType::f16);
  const Pair b = random_pair(m, 91, 2, -6, 6, 0.3, 8, DType::f16);
  const Array queries = b.gpu.coords().clone();
  const auto run = [&] {
    const SparseTensor y = ops::sparse_binary(BinaryOp::add, a.gpu, b.gpu, {.lhs_fill = 1});
    const SparseTensor d = ops::downsample_coords(y, Int3{2});
    const SparseTensor u = ops::union_coords(d, ops::downsample_coords(a.gpu, Int3{2}));
    return std::vector<Array>{y.feats(),
                              y.coords(),
                              y.active_rows(),
                              ops::inverse_map(y, u),
                              ops::morton_sort_coords(y).feats(),
                              ops::lookup_coords(a.gpu, queries),
                              ops::reindex_sparse(a.gpu, b.gpu, 2.0).feats(),
                              u.active_rows()};
  };
  const auto eager = run();
  synchronize(k_gpu);
  auto stream = static_cast<cudaStream_t>(current_stream(k_gpu).handle);
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  std::vector<Array> captured;
  try {
    captured = run();
  } catch (const std::exception& e) {
    cudaGraph_t broken = nullptr;
    cudaStreamEndCapture(stream, &broken);
    if (broken) cudaGraphDestroy(broken);
    FAIL() << "ops failed under capture: " << e.what();
  }
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  synchronize(k_gpu);
  ASSERT_EQ(captured.size(), eager.size());
  for (std::size_t i = 0; i < eager.size(); ++i) EXPECT_EQ(bytes_of(captured[i]), bytes_of(eager[i])) << "output " << i;
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

TEST_F(GpuSets, BitwiseDeterministic) {
  Managers m;
  const Pair a = random_pair(m, 60, 4, -10, 10, 0.1, 16, DType::f32);
  const Pair b = random_pair(m, 61, 4, -10, 10, 0.1, 16, DType::f32);
  const auto run = [&] {
    const SparseTensor y = ops::sparse_binary(BinaryOp::add, a.gpu, b.gpu, {.lhs_fill = 1, .rhs_fill = 2});
    const SparseTensor d = ops::downsample_coords(y, Int3{2});
    const SparseTensor s = ops::morton_sort_coords(y);
    return std::vector<std::vector<unsigned char>>{
        bytes_of(y.coords().rows(0, y.rows())), bytes_of(y.feats().rows(0, y.rows())),
        bytes_of(d.coords().rows(0, d.rows())), bytes_of(s.coords()), bytes_of(s.feats())};
  };
  const auto first = run();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(run(), first);
}

TEST_F(GpuSets, DeviceErrorsAreReported) {
  Managers m;
  const Pair x = random_pair(m, 70, 1, -3, 3, 0.5, 2, DType::f32);
  // A row index past the active rows: a sticky error naming the op.
  const Array bad = Array::from_vector<std::int32_t>({0, static_cast<std::int32_t>(x.cpu.rows())}, Shape{2}, k_gpu);
  (void)ops::gather_aligned_features(x.gpu, bad);
  expect_error<ValueError>([&] { synchronize(k_gpu); },
                           {"[gather_aligned_features]", "'rows'", "entry 1", "outside [-1, "});
  // Raw Morton coordinates on the device are checked by the kernel.
  (void)ops::morton_codes(coords_array({{0, 131072, 0, 0}}).to(k_gpu), Int3{1});
  expect_error<ValueError>([&] { synchronize(k_gpu); }, {"[morton_codes]", "131072"});
  (void)ops::morton_codes(coords_array({{0, 3, 0, 0}}).to(k_gpu), Int3{2});
  expect_error<ValueError>([&] { synchronize(k_gpu); }, {"[morton_codes]", "not divisible"});
  (void)ops::morton_codes(coords_array({{1024, 0, 0, 0}}).to(k_gpu), Int3{1});
  expect_error<ValueError>([&] { synchronize(k_gpu); }, {"[morton_codes]", "batch index 1024", "Morton range"});
  synchronize(k_gpu);  // the slot is clear again
  // Host-side checks still run first for device tensors.
  Managers m2;
  const Pair y = random_pair(m2, 71, 1, -3, 3, 0.5, 3, DType::f32);
  expect_error<DeviceError>([&] { ops::sparse_binary(BinaryOp::add, x.gpu, x.cpu); }, {"[sparse_binary]", "'rhs'"});
  expect_error<ValueError>([&] { ops::sparse_binary(BinaryOp::add, x.gpu, y.gpu); }, {"[sparse_binary]", "manager"});
}

}  // namespace
}  // namespace lattice::testing::gpu

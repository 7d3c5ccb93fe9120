// GPU suite, neighbour relations: the CUDA knn / radius search and gather
// against the CPU route (itself checked against brute force in
// tests/cpp/test_neighbors.cpp). Indices and float32 distances must be
// bitwise identical; runs are bitwise identical to each other; values that
// only the GPU sees (non-finite points, bad batch indices) are reported
// through the sticky error slot at the next host-facing call.
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "gpu/gpu_harness.hpp"
#include "lattice/io/point_cloud.hpp"
#include "lattice/ops/neighbors.hpp"

namespace lattice::testing::gpu {
namespace {

struct Cloud {
  std::vector<float> pts;
  std::vector<std::int32_t> batch;
  std::int64_t size() const { return static_cast<std::int64_t>(batch.size()); }
  ops::PointSet set(Device device, bool with_batch = true) const {
    ops::PointSet s{Array::from_vector(pts, Shape{size(), 3}).to(device), std::nullopt};
    if (with_batch) s.batch_indices = Array::from_vector(batch, Shape{size()}).to(device);
    return s;
  }
};

Cloud random_cloud(Rng& rng, const std::vector<int>& counts, bool integer, double span) {
  Cloud c;
  for (std::size_t b = 0; b < counts.size(); ++b) {
    for (int i = 0; i < counts[b]; ++i) c.batch.push_back(static_cast<std::int32_t>(b));
  }
  std::shuffle(c.batch.begin(), c.batch.end(), rng.engine());
  for (std::size_t i = 0; i < 3 * c.batch.size(); ++i) {
    const double v =
        integer ? static_cast<double>(rng.integer(static_cast<std::int64_t>(-span), static_cast<std::int64_t>(span)))
                : rng.uniform(-span, span);
    c.pts.push_back(static_cast<float>(v));
  }
  return c;
}

// Bitwise comparison of two relations (the GPU one is copied to the host).
void expect_identical(const ops::NeighborRelation& cpu, const ops::NeighborRelation& gpu, const std::string& what) {
  SCOPED_TRACE(what);
  ASSERT_EQ(gpu.indices.shape(), cpu.indices.shape());
  ASSERT_EQ(gpu.distances.shape(), cpu.distances.shape());
  EXPECT_EQ(gpu.source_rows, cpu.source_rows);
  const auto ci = cpu.indices.to_vector<std::int32_t>(), gi = gpu.indices.to(Device::cpu()).to_vector<std::int32_t>();
  const auto cd = cpu.distances.to_vector<float>(), gd = gpu.distances.to(Device::cpu()).to_vector<float>();
  const std::int64_t k = cpu.indices.ndim() == 2 ? cpu.indices.dim(1) : 1;
  int failures = 0;
  for (std::size_t e = 0; e < ci.size() && failures < 10; ++e) {
    if (ci[e] != gi[e] || std::memcmp(&cd[e], &gd[e], sizeof(float)) != 0) {
      ++failures;
      ADD_FAILURE() << "query " << e / k << " slot " << e % k << ": cuda (" << gi[e] << ", " << gd[e] << ") cpu ("
                    << ci[e] << ", " << cd[e] << ")";
    }
  }
}

class GpuNeighbors : public GpuTest {};

TEST_F(GpuNeighbors, KnnAndRadiusMatchTheCpu) {
  Rng rng(41);
  struct Shape3 {
    std::vector<int> src, q;
    bool integer;
    double span;
  };
  const std::vector<Shape3> shapes{{{1}, {1}, true, 1},
                                   {{50}, {20}, true, 3},
                                   {{3000, 10, 0, 800}, {400, 5, 60, 100}, true, 12},
                                   {{5000, 2000}, {1000, 1000}, false, 40},
                                   {{60000, 40000}, {50000, 50000}, false, 60}};
  for (const Shape3& sh : shapes) {
    const Cloud s = random_cloud(rng, sh.src, sh.integer, sh.span);
    const Cloud q = random_cloud(rng, sh.q, sh.integer, sh.span * 1.1);
    const std::string tag = "n=" + std::to_string(s.size());
    for (std::int64_t k : {1, 8, 16, 64}) {
      poison_pool(16 << 20);
      expect_identical(ops::knn_relation(q.set(Device::cpu()), s.set(Device::cpu()), k),
                       ops::knn_relation(q.set(k_gpu), s.set(k_gpu), k), tag + " knn k=" + std::to_string(k));
    }
    for (double radius : {1.0, 2.5, 0.2 * sh.span}) {
      expect_identical(ops::radius_relation(q.set(Device::cpu()), s.set(Device::cpu()), radius, 32),
                       ops::radius_relation(q.set(k_gpu), s.set(k_gpu), radius, 32),
                       tag + " radius " + std::to_string(radius));
    }
    synchronize(k_gpu);
  }
}

TEST_F(GpuNeighbors, DegenerateCloudsMatchTheCpu) {
  Rng rng(42);
  Cloud flat = random_cloud(rng, {4000}, false, 30);
  for (std::int64_t i = 0; i < flat.size(); ++i) flat.pts[3 * i + 2] = 0;
  Cloud same{std::vector<float>(3 * 100, -1.5f), std::vector<std::int32_t>(100, 0)};
  Cloud far_q = random_cloud(rng, {100}, false, 1000);
  for (std::int64_t i = 0; i < far_q.size(); ++i) far_q.pts[3 * i] += 5000;
  const Cloud huge_q = random_cloud(rng, {20}, false, 1e30);
  for (const Cloud* s : std::vector<const Cloud*>{&flat, &same}) {
    for (const Cloud* q : std::vector<const Cloud*>{&far_q, &huge_q, s}) {
      expect_identical(ops::knn_relation(q->set(Device::cpu()), s->set(Device::cpu()), 12),
                       ops::knn_relation(q->set(k_gpu), s->set(k_gpu), 12), "degenerate knn");
      expect_identical(ops::radius_relation(q->set(Device::cpu()), s->set(Device::cpu()), 0.01, 12),
                       ops::radius_relation(q->set(k_gpu), s->set(k_gpu), 0.01, 12), "degenerate radius");
    }
  }
  // No batch indices at all.
  expect_identical(ops::knn_relation(far_q.set(Device::cpu(), false), flat.set(Device::cpu(), false), 5),
                   ops::knn_relation(far_q.set(k_gpu, false), flat.set(k_gpu, false), 5), "no batch");
}

TEST_F(GpuNeighbors, EmptySets) {
  Rng rng(43);
  const Cloud s = random_cloud(rng, {30, 3}, true, 2);
  const Cloud none;
  for (const auto& [q, src] : {std::pair{&s, &none}, std::pair{&none, &s}, std::pair{&none, &none}}) {
    expect_identical(ops::knn_relation(q->set(Device::cpu()), src->set(Device::cpu()), 4),
                     ops::knn_relation(q->set(k_gpu), src->set(k_gpu), 4), "empty knn");
    expect_identical(ops::radius_relation(q->set(Device::cpu()), src->set(Device::cpu()), 1.0, 4),
                     ops::radius_relation(q->set(k_gpu), src->set(k_gpu), 1.0, 4), "empty radius");
  }
  synchronize(k_gpu);
}

TEST_F(GpuNeighbors, SparseTensorsMatchTheCpu) {
  Rng rng(44);
  for (const I3& stride : {I3{1, 1, 1}, I3{2, 2, 2}}) {
    const auto qc = random_coords(rng, 2, -20, 20, stride, 0.05);
    const auto sc = random_coords(rng, 3, -15, 15, stride, 0.2);
    const std::int64_t nq = static_cast<std::int64_t>(qc.size()), ns = static_cast<std::int64_t>(sc.size());
    const SparseTensorOptions qo{
        .stride = {stride[0], stride[1], stride[2]}, .manager = CoordinateManager::create(), .active_rows = nq - 5};
    const SparseTensorOptions so{
        .stride = {stride[0], stride[1], stride[2]}, .manager = qo.manager, .active_rows = ns / 2};
    const SparseTensor q = SparseTensor::from_coords(coords_array(qc), Array::zeros(Shape{nq, 1}, DType::f32), qo);
    const SparseTensor s = SparseTensor::from_coords(coords_array(sc), Array::zeros(Shape{ns, 2}, DType::f32), so);
    const SparseTensor qg =
        SparseTensor::from_coords(coords_array(qc).to(k_gpu), Array::zeros(Shape{nq, 1}, DType::f32, k_gpu), qo);
    const SparseTensor sg =
        SparseTensor::from_coords(coords_array(sc).to(k_gpu), Array::zeros(Shape{ns, 2}, DType::f32, k_gpu), so);
    for (std::int64_t k : {1, 9, 27}) {
      expect_identical(ops::knn_relation(q, s, k), ops::knn_relation(qg, sg, k), "tensor knn");
    }
    expect_identical(ops::radius_relation(q, s, 3.0 * stride[0], 40), ops::radius_relation(qg, sg, 3.0 * stride[0], 40),
                     "tensor radius");
    const ops::PointSet vc = ops::voxel_centers(q), vg = ops::voxel_centers(qg);
    EXPECT_EQ(vg.points.to(Device::cpu()).to_vector<float>(), vc.points.to_vector<float>());
    EXPECT_EQ(vg.batch_indices->to(Device::cpu()).to_vector<std::int32_t>(),
              vc.batch_indices->to_vector<std::int32_t>());
  }
}

TEST_F(GpuNeighbors, RunsAreBitwiseIdentical) {
  Rng rng(45);
  const Cloud s = random_cloud(rng, {80000, 20000}, true, 30);  // many exact ties
  const Cloud q = random_cloud(rng, {30000, 10000}, true, 30);
  const auto a = ops::knn_relation(q.set(k_gpu), s.set(k_gpu), 32);
  poison_pool(64 << 20);
  const auto b = ops::knn_relation(q.set(k_gpu), s.set(k_gpu), 32);
  expect_identical({a.indices.to(Device::cpu()), a.distances.to(Device::cpu()), a.source_rows}, b, "run to run");
  const auto r1 = ops::radius_relation(q.set(k_gpu), s.set(k_gpu), 2.0, 64);
  const auto r2 = ops::radius_relation(q.set(k_gpu), s.set(k_gpu), 2.0, 64);
  expect_identical({r1.indices.to(Device::cpu()), r1.distances.to(Device::cpu()), r1.source_rows}, r2, "radius runs");
}

TEST_F(GpuNeighbors, GatherMatchesTheCpu) {
  Rng rng(46);
  const Cloud s = random_cloud(rng, {900, 40}, true, 6);
  const Cloud q = random_cloud(rng, {300, 50, 7}, true, 6);  // batch 2 has no sources
  const auto rel = ops::knn_relation(q.set(Device::cpu()), s.set(Device::cpu()), 48);
  const ops::NeighborRelation rel_gpu{rel.indices.to(k_gpu), rel.distances.to(k_gpu), rel.source_rows};
  for (DType dtype : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    for (std::int64_t c : {1, 3, 64}) {
      const Array feats =
          make_array(random_values(rng, static_cast<std::size_t>(s.size() * c)), Shape{s.size(), c}, dtype);
      poison_pool(16 << 20);
      const Array a = ops::gather_neighbor_features(feats, rel);
      const Array b = ops::gather_neighbor_features(feats.to(k_gpu), rel_gpu).to(Device::cpu());
      ASSERT_EQ(b.shape(), a.shape());
      ASSERT_EQ(b.dtype(), dtype);
      EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0) << dtype_name(dtype) << " C=" << c;
    }
  }
  // Empty relation.
  const ops::NeighborRelation empty{Array::empty(Shape{0, 4}, DType::i32, k_gpu),
                                    Array::empty(Shape{0, 4}, DType::f32, k_gpu), s.size()};
  EXPECT_EQ(ops::gather_neighbor_features(Array::zeros(Shape{s.size(), 2}, DType::f32, k_gpu), empty).shape(),
            (Shape{0, 4, 2}));
}

TEST_F(GpuNeighbors, DeviceValuesAreReportedThroughTheStickyError) {
  Rng rng(47);
  Cloud s = random_cloud(rng, {100}, false, 3);
  const Cloud q = random_cloud(rng, {10}, false, 3);
  synchronize(k_gpu);
  Cloud bad = s;
  bad.pts[3 * 17 + 2] = std::numeric_limits<float>::quiet_NaN();
  (void)ops::knn_relation(q.set(k_gpu), bad.set(k_gpu), 3);
  expect_error<ValueError>([] { synchronize(k_gpu); }, {"[knn_relation]", "point 17", "non-finite"});
  (void)ops::radius_relation(bad.set(k_gpu), s.set(k_gpu), 1.0, 3);
  expect_error<ValueError>([] { synchronize(k_gpu); }, {"[radius_relation]", "point 17"});
  bad = s;
  bad.batch[42] = 1023;
  (void)ops::knn_relation(q.set(k_gpu), bad.set(k_gpu), 3);
  expect_error<ValueError>([] { synchronize(k_gpu); }, {"[knn_relation]", "entry 42", "1023"});
  // The slot is clear again afterwards.
  (void)ops::knn_relation(q.set(k_gpu), s.set(k_gpu), 3);
  EXPECT_NO_THROW(synchronize(k_gpu));
  // Mixed devices are rejected on the host.
  expect_error<DeviceError>([&] { ops::knn_relation(q.set(Device::cpu()), s.set(k_gpu), 3); },
                            {"[knn_relation]", "'source'"});
  expect_error<DeviceError>(
      [&] {
        ops::knn_relation({q.set(k_gpu).points, Array::from_vector(q.batch, Shape{q.size()})}, s.set(k_gpu), 3);
      },
      {"'query.batch_indices'"});
  const auto rel = ops::knn_relation(q.set(k_gpu), s.set(k_gpu), 3);
  // A hand-built relation with an index past the source rows: the CPU's error, raised at the next sync.
  const ops::NeighborRelation hand{Array::from_vector<std::int32_t>({0, -1, 99, 100}, Shape{2, 2}, k_gpu),
                                   Array::zeros(Shape{2, 2}, DType::f32, k_gpu), 100};
  (void)ops::gather_neighbor_features(Array::zeros(Shape{100, 2}, DType::f32, k_gpu), hand);
  expect_error<ValueError>([] { synchronize(k_gpu); },
                           {"[gather_neighbor_features]", "'relation'", "index 100 at (1, 1)", "outside [-1, 100)"});
  expect_error<DeviceError>(
      [&] {
        ops::gather_neighbor_features(Array::zeros(Shape{100, 2}, DType::f32), rel);
      },
      {"[gather_neighbor_features]", "'feats'"});
}

TEST_F(GpuNeighbors, SemanticKittiScanMatchesTheCpu) {
  LATTICE_REQUIRE_SHARED_FILE(path, "semantickitti/000000.bin");
  const io::PointCloud cloud = io::read_kitti_bin(path);
  const ops::PointSet cpu{cloud.positions, std::nullopt};
  const ops::PointSet gpu{cloud.positions.to(k_gpu), std::nullopt};
  expect_identical(ops::knn_relation(cpu, cpu, 16), ops::knn_relation(gpu, gpu, 16), "kitti knn 16");
  expect_identical(ops::radius_relation(cpu, cpu, 0.3, 32), ops::radius_relation(gpu, gpu, 0.3, 32),
                   "kitti radius 0.3");
}

}  // namespace
}  // namespace lattice::testing::gpu

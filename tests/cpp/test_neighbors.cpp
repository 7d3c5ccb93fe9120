// Neighbour relations against a brute-force reference written here: every
// (query, source) pair of the same batch item, the float32 distance formula of
// lattice/ops/neighbors.hpp, a full sort by (distance, row). Indices and
// distances must match exactly. Random clouds with many exact ties (integer
// points), several batches of different sizes, empty sets, k beyond the
// available points, inclusive radius, tensors at stride 1 and 2, gather, the
// SemanticKITTI scan, and every error path.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "lattice/io/point_cloud.hpp"
#include "lattice/ops/neighbors.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

constexpr float k_inf = std::numeric_limits<float>::infinity();

struct Cloud {
  std::vector<float> pts;  // 3 per point
  std::vector<std::int32_t> batch;
  std::int64_t size() const { return static_cast<std::int64_t>(batch.size()); }
  ops::PointSet set(bool with_batch = true) const {
    ops::PointSet s{Array::from_vector(pts, Shape{size(), 3}), std::nullopt};
    if (with_batch) s.batch_indices = Array::from_vector(batch, Shape{size()});
    return s;
  }
};

// counts[b] points in batch b, rows interleaved at random; integer-valued
// coordinates in [-span, span] when `integer` (many exact ties), else uniform.
Cloud random_cloud(Rng& rng, const std::vector<int>& counts, bool integer, double span) {
  Cloud c;
  for (std::size_t b = 0; b < counts.size(); ++b) {
    for (int i = 0; i < counts[b]; ++i) c.batch.push_back(static_cast<std::int32_t>(b));
  }
  std::shuffle(c.batch.begin(), c.batch.end(), rng.engine());
  for (std::size_t i = 0; i < c.batch.size(); ++i) {
    for (int a = 0; a < 3; ++a) {
      const double v =
          integer ? static_cast<double>(rng.integer(static_cast<std::int64_t>(-span), static_cast<std::int64_t>(span)))
                  : rng.uniform(-span, span);
      c.pts.push_back(static_cast<float>(v));
    }
  }
  return c;
}

// The documented float32 formula, one rounding per operation.
float ref_distance2(const float* s, const float* q) {
  volatile float dx = s[0] - q[0], dy = s[1] - q[1], dz = s[2] - q[2];
  volatile float xx = dx * dx, yy = dy * dy, zz = dz * dz;
  volatile float xy = xx + yy;
  return xy + zz;
}

struct RefRelation {
  std::vector<std::int32_t> idx;
  std::vector<float> dist;
};

// Brute force: query rows < q_rows, source rows < s_rows; radius2 < 0 = knn.
RefRelation brute_force(const std::vector<float>& qp, const std::vector<std::int32_t>& qb, std::int64_t q_total,
                        std::int64_t q_rows, const std::vector<float>& sp, const std::vector<std::int32_t>& sb,
                        std::int64_t s_rows, std::int64_t k, float radius2) {
  RefRelation r{std::vector<std::int32_t>(q_total * k, -1), std::vector<float>(q_total * k, k_inf)};
  for (std::int64_t i = 0; i < q_rows; ++i) {
    std::vector<std::pair<float, std::int32_t>> cand;
    for (std::int64_t j = 0; j < s_rows; ++j) {
      if (sb[j] != qb[i]) continue;
      const float d = ref_distance2(&sp[3 * j], &qp[3 * i]);
      if (radius2 >= 0 && !(d <= radius2)) continue;
      cand.emplace_back(d, static_cast<std::int32_t>(j));
    }
    const std::size_t keep = std::min(cand.size(), static_cast<std::size_t>(k));
    std::partial_sort(cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(keep), cand.end());
    for (std::int64_t j = 0; j < k && j < static_cast<std::int64_t>(cand.size()); ++j) {
      r.dist[i * k + j] = cand[j].first;
      r.idx[i * k + j] = cand[j].second;
    }
  }
  return r;
}

RefRelation brute_force(const Cloud& q, const Cloud& s, std::int64_t k, float radius2) {
  return brute_force(q.pts, q.batch, q.size(), q.size(), s.pts, s.batch, s.size(), k, radius2);
}

void expect_relation(const ops::NeighborRelation& got, const RefRelation& ref, std::int64_t k,
                     const std::string& what) {
  SCOPED_TRACE(what);
  const std::int64_t nq = static_cast<std::int64_t>(ref.idx.size()) / k;
  ASSERT_EQ(got.indices.shape(), (Shape{nq, k}));
  ASSERT_EQ(got.distances.shape(), (Shape{nq, k}));
  ASSERT_EQ(got.indices.dtype(), DType::i32);
  ASSERT_EQ(got.distances.dtype(), DType::f32);
  const std::int32_t* idx = got.indices.data<std::int32_t>();
  const float* dist = got.distances.data<float>();
  int failures = 0;
  for (std::int64_t e = 0; e < nq * k && failures < 10; ++e) {
    const bool same = idx[e] == ref.idx[e] && std::memcmp(&dist[e], &ref.dist[e], sizeof(float)) == 0;
    if (!same) {
      ++failures;
      ADD_FAILURE() << "query " << e / k << " slot " << e % k << ": got (" << idx[e] << ", " << dist[e]
                    << ") expected (" << ref.idx[e] << ", " << ref.dist[e] << ")";
    }
  }
}

float f32_square(double radius) {
  const float r = static_cast<float>(radius);
  return r * r;
}

// ---- knn / radius on point sets ----------------------------------------------------

TEST(Neighbors, KnnMatchesBruteForce) {
  Rng rng(11);
  const std::vector<std::tuple<std::vector<int>, std::vector<int>, bool, double>> shapes{
      {{40}, {25}, true, 3},                        // tiny, dense ties
      {{300, 5, 0, 120}, {50, 7, 9, 30}, true, 6},  // uneven batches, an empty source item
      {{500}, {200}, false, 10},                    // continuous
      {{2000, 1000}, {150, 150}, true, 20},         // sparse integers
      {{1500, 600, 3}, {100, 50, 20}, false, 50}};
  for (const auto& [src_counts, q_counts, integer, span] : shapes) {
    const Cloud s = random_cloud(rng, src_counts, integer, span);
    const Cloud q = random_cloud(rng, q_counts, integer, span * 1.2);
    for (std::int64_t k : {1, 3, 8, 16, 64}) {
      expect_relation(ops::knn_relation(q.set(), s.set(), k), brute_force(q, s, k, -1), k,
                      "knn k=" + std::to_string(k) + " n=" + std::to_string(s.size()));
    }
  }
}

TEST(Neighbors, RadiusMatchesBruteForceAndIsInclusive) {
  Rng rng(12);
  for (bool integer : {true, false}) {
    const Cloud s = random_cloud(rng, {400, 250, 1}, integer, 8);
    const Cloud q = random_cloud(rng, {120, 60, 30}, integer, 9);
    // Integer radii hit exact distances of integer points (d² = r²: kept).
    for (double radius : {1.0, 2.0, 3.0, 1.5, 0.3, 5.0, 30.0}) {
      for (std::int64_t m : {1, 4, 16, 64}) {
        expect_relation(ops::radius_relation(q.set(), s.set(), radius, m), brute_force(q, s, m, f32_square(radius)), m,
                        "radius " + std::to_string(radius) + " m=" + std::to_string(m));
      }
    }
  }
  // One pair exactly at the radius.
  Cloud s{{3, 4, 0, 0, 0, 0}, {0, 0}};
  Cloud q{{0, 0, 0}, {0}};
  const auto rel = ops::radius_relation(q.set(), s.set(), 5.0, 3);
  EXPECT_EQ(rel.indices.to_vector<std::int32_t>(), (std::vector<std::int32_t>{1, 0, -1}));
  EXPECT_EQ(rel.distances.to_vector<float>(), (std::vector<float>{0.0f, 25.0f, k_inf}));
  const auto rel2 = ops::radius_relation(q.set(), s.set(), 4.999, 3);
  EXPECT_EQ(rel2.indices.to_vector<std::int32_t>(), (std::vector<std::int32_t>{1, -1, -1}));
}

TEST(Neighbors, TiesGoToTheLowerSourceRow) {
  // Eight sources at the same distance from the origin, in shuffled rows, and duplicates.
  Cloud s{{1, 0, 0, 0, 1, 0, -1, 0, 0, 0, 0, 1, 0, -1, 0, 0, 0, -1, 1, 0, 0, 0, 1, 0}, {0, 0, 0, 0, 0, 0, 0, 0}};
  Cloud q{{0, 0, 0}, {0}};
  const auto rel = ops::knn_relation(q.set(false), s.set(false), 5);
  EXPECT_EQ(rel.indices.to_vector<std::int32_t>(), (std::vector<std::int32_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(rel.distances.to_vector<float>(), (std::vector<float>(5, 1.0f)));
}

TEST(Neighbors, QueryIsItsOwnNeighbour) {
  Rng rng(13);
  const Cloud s = random_cloud(rng, {300, 200}, false, 5);
  const auto rel = ops::knn_relation(s.set(), s.set(), 1);
  const auto idx = rel.indices.to_vector<std::int32_t>();
  const auto dist = rel.distances.to_vector<float>();
  for (std::int64_t i = 0; i < s.size(); ++i) {
    EXPECT_EQ(idx[i], i);
    EXPECT_EQ(dist[i], 0.0f);
  }
}

TEST(Neighbors, EmptySetsAndPadding) {
  Rng rng(14);
  const Cloud s = random_cloud(rng, {5, 2}, true, 2);
  const Cloud q = random_cloud(rng, {3, 3, 2}, true, 2);  // batch 2 has no sources
  const Cloud none;
  for (std::int64_t k : {4, 10}) {
    expect_relation(ops::knn_relation(q.set(), s.set(), k), brute_force(q, s, k, -1), k, "k beyond available");
    expect_relation(ops::knn_relation(q.set(), none.set(), k), brute_force(q, none, k, -1), k, "empty source");
    expect_relation(ops::knn_relation(none.set(), s.set(), k), brute_force(none, s, k, -1), k, "empty query");
    expect_relation(ops::radius_relation(q.set(), none.set(), 1.0, k), brute_force(q, none, k, 1), k, "empty r");
  }
  const auto rel = ops::knn_relation(none.set(), s.set(), 3);
  EXPECT_EQ(rel.indices.shape(), (Shape{0, 3}));
}

TEST(Neighbors, DegenerateAndFarClouds) {
  Rng rng(15);
  struct Case {
    std::string name;
    Cloud s, q;
  };
  std::vector<Case> cases;
  // All sources identical.
  Cloud same{std::vector<float>(3 * 50, 2.5f), std::vector<std::int32_t>(50, 0)};
  cases.push_back({"identical", same, random_cloud(rng, {20}, true, 4)});
  // A flat cloud (z = 0) and a line.
  Cloud flat = random_cloud(rng, {800}, false, 30);
  Cloud line = random_cloud(rng, {300}, true, 40);
  for (std::int64_t i = 0; i < flat.size(); ++i) flat.pts[3 * i + 2] = 0;
  for (std::int64_t i = 0; i < line.size(); ++i) line.pts[3 * i + 1] = line.pts[3 * i + 2] = 1;
  cases.push_back({"flat", flat, random_cloud(rng, {100}, false, 35)});
  cases.push_back({"line", line, random_cloud(rng, {100}, true, 45)});
  // Queries far outside the sources, and huge coordinates.
  Cloud far_q = random_cloud(rng, {40}, false, 1000);
  for (std::int64_t i = 0; i < far_q.size(); ++i) far_q.pts[3 * i] += 5000;
  cases.push_back({"far", random_cloud(rng, {500}, false, 10), far_q});
  Cloud huge_q = random_cloud(rng, {10}, false, 1e30);
  cases.push_back({"huge", random_cloud(rng, {200}, false, 1e6), huge_q});
  // Clustered: most points in a tiny ball, a few far away.
  Cloud cluster = random_cloud(rng, {600}, false, 0.01);
  const Cloud outliers = random_cloud(rng, {10}, false, 1000);
  cluster.pts.insert(cluster.pts.end(), outliers.pts.begin(), outliers.pts.end());
  cluster.batch.insert(cluster.batch.end(), outliers.batch.begin(), outliers.batch.end());
  cases.push_back({"cluster", cluster, random_cloud(rng, {60}, false, 2)});
  for (const Case& c : cases) {
    for (std::int64_t k : {1, 7, 32}) {
      expect_relation(ops::knn_relation(c.q.set(), c.s.set(), k), brute_force(c.q, c.s, k, -1), k,
                      c.name + " knn k=" + std::to_string(k));
    }
    for (double radius : {0.001, 0.5, 3.0, 100.0}) {
      expect_relation(ops::radius_relation(c.q.set(), c.s.set(), radius, 16),
                      brute_force(c.q, c.s, 16, f32_square(radius)), 16, c.name + " radius " + std::to_string(radius));
    }
  }
}

TEST(Neighbors, WithoutBatchIndicesEverythingIsBatchZero) {
  Rng rng(16);
  const Cloud s = random_cloud(rng, {300}, true, 5);
  const Cloud q = random_cloud(rng, {50}, true, 5);
  expect_relation(ops::knn_relation(q.set(false), s.set(false), 6), brute_force(q, s, 6, -1), 6, "no batch");
}

// ---- sparse tensor inputs ----------------------------------------------------------

struct TensorPoints {
  std::vector<float> pts;
  std::vector<std::int32_t> batch;
};

TensorPoints centres(const std::vector<Coord>& coords, const I3& stride) {
  TensorPoints t;
  for (const Coord& c : coords) {
    t.batch.push_back(c[0]);
    for (int a = 0; a < 3; ++a) t.pts.push_back(static_cast<float>(c[1 + a] + 0.5 * stride[a]));
  }
  return t;
}

TEST(Neighbors, SparseTensorInputsUseVoxelCentres) {
  Rng rng(17);
  auto manager = CoordinateManager::create();
  for (const I3& stride : {I3{1, 1, 1}, I3{2, 2, 2}, I3{1, 2, 4}}) {
    const auto qc = random_coords(rng, 2, -6, 6, stride, 0.08);
    const auto sc = random_coords(rng, 3, -5, 5, stride, 0.3);
    const std::int64_t nq = static_cast<std::int64_t>(qc.size()), ns = static_cast<std::int64_t>(sc.size());
    // The source keeps only its first ns - 7 rows active.
    const SparseTensor q = SparseTensor::from_coords(coords_array(qc), Array::zeros(Shape{nq, 2}, DType::f32),
                                                     {.stride = {stride[0], stride[1], stride[2]}, .manager = manager});
    const SparseTensor s = SparseTensor::from_coords(
        coords_array(sc), Array::zeros(Shape{ns, 1}, DType::f32),
        {.stride = {stride[0], stride[1], stride[2]}, .manager = manager, .active_rows = ns - 7});
    const TensorPoints tq = centres(qc, stride), ts = centres(sc, stride);
    for (std::int64_t k : {1, 5, 27}) {
      expect_relation(ops::knn_relation(q, s, k),
                      brute_force(tq.pts, tq.batch, nq, nq, ts.pts, ts.batch, ns - 7, k, -1), k, "tensor knn");
    }
    const double radius = 2.0 * stride[0];
    expect_relation(ops::radius_relation(q, s, radius, 27),
                    brute_force(tq.pts, tq.batch, nq, nq, ts.pts, ts.batch, ns - 7, 27, f32_square(radius)), 27,
                    "tensor radius");
    // A tensor query with inactive rows gets padding there.
    const SparseTensor qa = SparseTensor::from_coords(
        coords_array(qc), Array::zeros(Shape{nq, 2}, DType::f32),
        {.stride = {stride[0], stride[1], stride[2]}, .manager = manager, .active_rows = nq / 2});
    expect_relation(ops::knn_relation(qa, s, 4),
                    brute_force(tq.pts, tq.batch, nq, nq / 2, ts.pts, ts.batch, ns - 7, 4, -1), 4, "inactive query");
    const ops::PointSet vc = ops::voxel_centers(q);
    EXPECT_EQ(vc.points.to_vector<float>(), tq.pts);
    EXPECT_EQ(vc.batch_indices->to_vector<std::int32_t>(), tq.batch);
  }
}

// ---- gather ------------------------------------------------------------------------

TEST(Neighbors, GatherNeighborFeatures) {
  Rng rng(18);
  const Cloud s = random_cloud(rng, {60, 30}, true, 3);
  const Cloud q = random_cloud(rng, {20, 10, 5}, true, 3);
  const auto rel = ops::knn_relation(q.set(), s.set(), 40);  // batch 1 has 30 < 40: padding
  const auto idx = rel.indices.to_vector<std::int32_t>();
  for (DType dtype : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    for (std::int64_t c : {1, 5}) {
      const auto values = random_values(rng, static_cast<std::size_t>(s.size() * c));
      const Array feats = make_array(values, Shape{s.size(), c}, dtype);
      const Array out = ops::gather_neighbor_features(feats, rel);
      ASSERT_EQ(out.shape(), (Shape{q.size(), 40, c}));
      ASSERT_EQ(out.dtype(), dtype);
      const auto got = to_doubles(out), src = to_doubles(feats);
      for (std::int64_t e = 0; e < q.size() * 40; ++e) {
        for (std::int64_t j = 0; j < c; ++j) {
          const double expect = idx[e] >= 0 ? src[idx[e] * c + j] : 0.0;
          ASSERT_EQ(got[e * c + j], expect) << "slot " << e << " channel " << j;
        }
      }
    }
  }
  // A tensor source gathers its feature rows.
  auto manager = CoordinateManager::create();
  const auto sc = random_coords(rng, 1, -3, 3, {1, 1, 1}, 0.5);
  const std::int64_t ns = static_cast<std::int64_t>(sc.size());
  const Array feats = make_array(random_values(rng, ns * 3), Shape{ns, 3}, DType::f32);
  const SparseTensor st = SparseTensor::from_coords(coords_array(sc), feats, {.manager = manager});
  const auto trel = ops::knn_relation(st, st, 2);
  const Array out = ops::gather_neighbor_features(st, trel);
  const auto got = to_doubles(out), src = to_doubles(feats);
  for (std::int64_t i = 0; i < ns; ++i) {
    for (std::int64_t j = 0; j < 3; ++j) EXPECT_EQ(got[(i * 2) * 3 + j], src[i * 3 + j]);  // itself first
  }
}

// ---- the SemanticKITTI scan --------------------------------------------------------

TEST(Neighbors, SemanticKittiKnn16MatchesBruteForce) {
  LATTICE_REQUIRE_SHARED_FILE(path, "semantickitti/000000.bin");
  const io::PointCloud cloud = io::read_kitti_bin(path);
  const std::int64_t n = cloud.positions.dim(0);
  const std::vector<float> pts = cloud.positions.to_vector<float>();
  Cloud s{pts, std::vector<std::int32_t>(static_cast<std::size_t>(n), 0)};
  // Every 61st point as a query (the scan's own points, so each finds itself).
  Cloud q;
  for (std::int64_t i = 0; i < n; i += 61) {
    q.pts.insert(q.pts.end(), pts.begin() + 3 * i, pts.begin() + 3 * i + 3);
    q.batch.push_back(0);
  }
  expect_relation(ops::knn_relation(q.set(false), s.set(false), 16), brute_force(q, s, 16, -1), 16, "kitti knn");
  expect_relation(ops::radius_relation(q.set(false), s.set(false), 0.5, 32), brute_force(q, s, 32, f32_square(0.5)), 32,
                  "kitti radius");
}

// ---- errors ------------------------------------------------------------------------

TEST(Neighbors, ErrorPaths) {
  Rng rng(19);
  const Cloud s = random_cloud(rng, {10}, false, 1);
  const ops::PointSet good = s.set();
  auto knn = [&](const ops::PointSet& q, const ops::PointSet& src, std::int64_t k) { ops::knn_relation(q, src, k); };
  expect_error<ValueError>([&] { knn(good, good, 0); }, {"[knn_relation]", "'k'", "0"});
  expect_error<ValueError>([&] { knn(good, good, 65); }, {"[knn_relation]", "'k'", "65"});
  expect_error<ValueError>([&] { ops::radius_relation(good, good, 0.0, 4); }, {"[radius_relation]", "'radius'"});
  expect_error<ValueError>([&] { ops::radius_relation(good, good, -1.0, 4); }, {"'radius'", "-1"});
  expect_error<ValueError>([&] { ops::radius_relation(good, good, std::nan(""), 4); }, {"'radius'", "nan"});
  expect_error<ValueError>([&] { ops::radius_relation(good, good, 1e300, 4); }, {"'radius'", "float32"});
  expect_error<ValueError>([&] { ops::radius_relation(good, good, 1.0, 0); }, {"'max_neighbors'", "0"});
  expect_error<ValueError>([&] { ops::radius_relation(good, good, 1.0, 100); }, {"'max_neighbors'", "100"});
  // Point arrays.
  expect_error<ValueError>([&] { knn({Array(), std::nullopt}, good, 1); }, {"'query.points'", "undefined"});
  expect_error<TypeError>(
      [&] {
        knn({good.points.astype(DType::f64), std::nullopt}, good, 1);
      },
      {"'query.points'", "float32"});
  expect_error<ValueError>(
      [&] {
        knn(good, {Array::zeros(Shape{4, 2}, DType::f32), std::nullopt}, 1);
      },
      {"'source.points'", "(N, 3)"});
  expect_error<ValueError>(
      [&] {
        knn(good, {Array::zeros(Shape{12}, DType::f32), std::nullopt}, 1);
      },
      {"'source.points'", "(N, 3)"});
  std::vector<float> bad = s.pts;
  bad[3 * 4 + 1] = std::numeric_limits<float>::infinity();
  expect_error<ValueError>(
      [&] {
        knn(good, {Array::from_vector(bad, Shape{10, 3}), std::nullopt}, 1);
      },
      {"[knn_relation]", "'source.points'", "point 4", "non-finite"});
  bad[3 * 4 + 1] = std::nanf("");
  expect_error<ValueError>(
      [&] {
        knn({Array::from_vector(bad, Shape{10, 3}), std::nullopt}, good, 1);
      },
      {"'query.points'", "point 4"});
  // Batch indices.
  std::vector<std::int32_t> b(10, 0);
  b[7] = 1023;
  expect_error<ValueError>(
      [&] {
        knn(good, {good.points, Array::from_vector(b, Shape{10})}, 1);
      },
      {"'source.batch_indices'", "entry 7", "1023"});
  b[7] = -1;
  expect_error<ValueError>(
      [&] {
        knn({good.points, Array::from_vector(b, Shape{10})}, good, 1);
      },
      {"'query.batch_indices'", "entry 7", "-1"});
  expect_error<TypeError>(
      [&] {
        knn(good, {good.points, Array::zeros(Shape{10}, DType::i64)}, 1);
      },
      {"'source.batch_indices'", "int32"});
  expect_error<ValueError>(
      [&] {
        knn(good, {good.points, Array::zeros(Shape{9}, DType::i32)}, 1);
      },
      {"'source.batch_indices'", "(10,)"});
  expect_error<ValueError>([&] { knn(good, {good.points, Array()}, 1); }, {"'source.batch_indices'", "undefined"});
  // Tensors.
  auto m1 = CoordinateManager::create(), m2 = CoordinateManager::create();
  const auto coords = random_coords(rng, 1, -2, 2, {1, 1, 1}, 0.5);
  const std::int64_t n = static_cast<std::int64_t>(coords.size());
  const SparseTensor t1 =
      SparseTensor::from_coords(coords_array(coords), Array::zeros(Shape{n, 1}, DType::f32), {.manager = m1});
  const SparseTensor t2 =
      SparseTensor::from_coords(coords_array(coords), Array::zeros(Shape{n, 1}, DType::f32), {.manager = m2});
  expect_error<ValueError>([&] { ops::knn_relation(t1, t2, 1); }, {"[knn_relation]", "'source'", "manager"});
  expect_error<ValueError>([&] { ops::radius_relation(SparseTensor(), t1, 1.0, 1); }, {"'query'", "undefined"});
  // Gather.
  const auto rel = ops::knn_relation(good, good, 3);
  auto gather = [&](const Array& f, const ops::NeighborRelation& r) { ops::gather_neighbor_features(f, r); };
  expect_error<ValueError>(
      [&] {
        gather(Array::zeros(Shape{9, 2}, DType::f32), rel);
      },
      {"[gather_neighbor_features]", "'feats'", "(10, C)"});
  expect_error<TypeError>([&] { gather(Array::zeros(Shape{10, 2}, DType::i32), rel); }, {"'feats'", "floating"});
  expect_error<ValueError>([&] { gather(Array(), rel); }, {"'feats'", "undefined"});
  ops::NeighborRelation broken = rel;
  std::vector<std::int32_t> idx = rel.indices.to_vector<std::int32_t>();
  idx[5] = 10;
  broken.indices = Array::from_vector(idx, Shape{10, 3});
  expect_error<ValueError>(
      [&] {
        gather(Array::zeros(Shape{10, 2}, DType::f32), broken);
      },
      {"'relation'", "index 10", "(1, 2)"});
  broken.indices = rel.indices.astype(DType::i64);
  expect_error<TypeError>([&] { gather(Array::zeros(Shape{10, 2}, DType::f32), broken); }, {"'relation'", "int32"});
  broken.indices = Array();
  expect_error<ValueError>([&] { gather(Array::zeros(Shape{10, 2}, DType::f32), broken); }, {"'relation'"});
  expect_error<ValueError>([&] { ops::gather_neighbor_features(SparseTensor(), rel); }, {"'source'", "undefined"});
  // Inputs are not mutated.
  EXPECT_EQ(good.points.to_vector<float>(), s.pts);
}

}  // namespace
}  // namespace lattice::testing

// Sparse algebra (SPEC §7, Appendix A "Sparse algebra") against a naive
// std::map reference: every op x join x fill x dtype per element (non-finite
// safe), the row maps of align_sparse, gather/reindex, identity rules and every
// error path.
#include <cmath>
#include <limits>
#include <map>

#include <gtest/gtest.h>

#include "lattice/core/trace.hpp"
#include "lattice/ops/algebra.hpp"
#include "support/expect_error.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

using ops::BinaryOp;
using ops::Join;

constexpr double k_inf = std::numeric_limits<double>::infinity();
const std::vector<BinaryOp> k_ops{BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::maximum, BinaryOp::minimum};
const std::vector<Join> k_joins{Join::inner, Join::outer, Join::left};

SparseTensor make_tensor(const std::vector<Coord>& coords, const std::vector<double>& values, std::int64_t ch,
                         DType dtype, const std::shared_ptr<CoordinateManager>& m, Int3 stride = Int3{1}) {
  const auto n = static_cast<std::int64_t>(coords.size());
  return SparseTensor::from_coords(coords_array(coords), make_array(values, Shape{n, ch}, dtype),
                                   {.stride = stride, .manager = m});
}

SparseTensor random_tensor(Rng& rng, int batches, int lo, int hi, double density, std::int64_t ch, DType dtype,
                           const std::shared_ptr<CoordinateManager>& m, Int3 stride = Int3{1}) {
  const auto coords = random_coords(rng, batches, lo, hi, {stride.x, stride.y, stride.z}, density);
  return make_tensor(coords, random_values(rng, coords.size() * static_cast<std::size_t>(ch)), ch, dtype, m, stride);
}

// The reference join: (lhs row, rhs row) pairs in output order (Appendix A).
std::vector<std::pair<int, int>> ref_join(const std::vector<Coord>& l, const std::vector<Coord>& r, Join join) {
  std::map<Coord, int> lmap, rmap;
  for (std::size_t i = 0; i < l.size(); ++i) lmap[l[i]] = static_cast<int>(i);
  for (std::size_t j = 0; j < r.size(); ++j) rmap[r[j]] = static_cast<int>(j);
  std::vector<std::pair<int, int>> out;
  for (std::size_t i = 0; i < l.size(); ++i) {
    const auto it = rmap.find(l[i]);
    if (it != rmap.end()) {
      out.emplace_back(static_cast<int>(i), it->second);
    } else if (join != Join::inner) {
      out.emplace_back(static_cast<int>(i), -1);
    }
  }
  if (join == Join::outer) {
    for (std::size_t j = 0; j < r.size(); ++j) {
      if (!lmap.contains(r[j])) out.emplace_back(-1, static_cast<int>(j));
    }
  }
  return out;
}

double ref_op(BinaryOp op, double a, double b) {
  switch (op) {
    case BinaryOp::add:
      return a + b;
    case BinaryOp::sub:
      return a - b;
    case BinaryOp::mul:
      return a * b;
    case BinaryOp::maximum:
      return std::isnan(a) || std::isnan(b) ? std::nan("") : std::max(a, b);
    case BinaryOp::minimum:
      return std::isnan(a) || std::isnan(b) ? std::nan("") : std::min(a, b);
  }
  return 0;
}

// Equal as values, NaN equal to NaN (inf fills give inf and NaN legitimately).
bool same_value(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

// Rounds doubles to `dtype` and back (the reference stores in the output dtype).
std::vector<double> rounded(const std::vector<double>& v, DType dtype) {
  return to_doubles(make_array(v, Shape{static_cast<std::int64_t>(v.size())}, dtype));
}

// Checks y = op(lhs, rhs) over `join` per element against the reference.
void expect_binary(const SparseTensor& y, const SparseTensor& lhs, const SparseTensor& rhs, BinaryOp op, Join join,
                   double lf, double rf) {
  const auto lc = coords_from_array(lhs.coords(), lhs.rows());
  const auto rc = coords_from_array(rhs.coords(), rhs.rows());
  const auto pairs = ref_join(lc, rc, join);
  ASSERT_EQ(y.rows(), static_cast<std::int64_t>(pairs.size()));
  const auto yc = coords_from_array(y.coords(), y.rows());
  const auto lv = to_doubles(lhs.feats()), rv = to_doubles(rhs.feats());
  const std::int64_t ch = lhs.channels();
  // Fills enter in the compute type; the fills used here are exact in every dtype.
  std::vector<double> expect;
  for (std::size_t o = 0; o < pairs.size(); ++o) {
    const auto [i, j] = pairs[o];
    EXPECT_EQ(yc[o], i >= 0 ? lc[static_cast<std::size_t>(i)] : rc[static_cast<std::size_t>(j)]) << "row " << o;
    for (std::int64_t k = 0; k < ch; ++k) {
      const double a = i >= 0 ? lv[static_cast<std::size_t>(i * ch + k)] : lf;
      const double b = j >= 0 ? rv[static_cast<std::size_t>(j * ch + k)] : rf;
      expect.push_back(ref_op(op, a, b));
    }
  }
  const auto want = rounded(expect, y.dtype());
  const auto got = to_doubles(y.feats().rows(0, y.rows()));
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t e = 0; e < got.size(); ++e) {
    EXPECT_TRUE(same_value(got[e], want[e])) << "element " << e << ": " << got[e] << " vs " << want[e];
  }
}

TEST(SparseBinary, EveryOpJoinFillDtype) {
  const std::vector<std::pair<double, double>> fills{{0.0, 0.0}, {1.5, -2.0}, {k_inf, -k_inf}};
  int seed = 0;
  for (DType dtype : {DType::f32, DType::f16, DType::f64, DType::bf16}) {
    for (BinaryOp op : k_ops) {
      for (Join join : k_joins) {
        for (const auto& [lf, rf] : fills) {
          SCOPED_TRACE(std::string(dtype_name(dtype)) + " " + std::string(ops::binary_op_name(op)) + " " +
                       std::string(ops::join_name(join)) + " fills " + std::to_string(lf) + "," + std::to_string(rf));
          Rng rng(static_cast<std::uint64_t>(++seed));
          auto m = CoordinateManager::create();
          const int batches = 1 + seed % 3;
          const std::int64_t ch = 1 + seed % 5;
          const SparseTensor lhs = random_tensor(rng, batches, -3, 3, 0.3, ch, dtype, m);
          const SparseTensor rhs = random_tensor(rng, batches, -3, 3, 0.3, ch, dtype, m);
          const SparseTensor y = ops::sparse_binary(op, lhs, rhs, {.join = join, .lhs_fill = lf, .rhs_fill = rf});
          expect_binary(y, lhs, rhs, op, join, lf, rf);
          EXPECT_EQ(y.dtype(), dtype);
          EXPECT_EQ(y.channels(), ch);
          EXPECT_EQ(y.manager(), m);
          if (join == Join::left) {
            EXPECT_EQ(y.key(), lhs.key());
          } else {
            EXPECT_NE(y.key(), lhs.key());
            EXPECT_NE(y.key(), rhs.key());
          }
        }
      }
    }
  }
}

TEST(SparseBinary, DefaultJoins) {
  EXPECT_EQ(ops::default_join(BinaryOp::add), Join::outer);
  EXPECT_EQ(ops::default_join(BinaryOp::sub), Join::outer);
  EXPECT_EQ(ops::default_join(BinaryOp::mul), Join::inner);
  EXPECT_EQ(ops::default_join(BinaryOp::maximum), Join::inner);
  EXPECT_EQ(ops::default_join(BinaryOp::minimum), Join::inner);
  Rng rng(7);
  auto m = CoordinateManager::create();
  const SparseTensor a = random_tensor(rng, 2, -3, 3, 0.4, 3, DType::f32, m);
  const SparseTensor b = random_tensor(rng, 2, -3, 3, 0.4, 3, DType::f32, m);
  for (BinaryOp op : k_ops) {
    SCOPED_TRACE(std::string(ops::binary_op_name(op)));
    expect_binary(ops::sparse_binary(op, a, b), a, b, op, ops::default_join(op), 0.0, 0.0);
  }
}

TEST(SparseBinary, OperatorForms) {
  Rng rng(11);
  auto m = CoordinateManager::create();
  const SparseTensor a = random_tensor(rng, 3, -4, 4, 0.2, 4, DType::f32, m);
  const SparseTensor b = random_tensor(rng, 3, -4, 4, 0.2, 4, DType::f32, m);
  expect_binary(a + b, a, b, BinaryOp::add, Join::outer, 0, 0);
  expect_binary(a - b, a, b, BinaryOp::sub, Join::outer, 0, 0);
  expect_binary(a * b, a, b, BinaryOp::mul, Join::inner, 0, 0);
}

TEST(SparseBinary, SameKeyIsRowWiseAndIgnoresJoinAndFills) {
  Rng rng(3);
  auto m = CoordinateManager::create();
  const SparseTensor a = random_tensor(rng, 2, -3, 3, 0.3, 3, DType::f32, m);
  const SparseTensor b = a.replace_feats(
      make_array(random_values(rng, static_cast<std::size_t>(a.capacity() * 3)), Shape{a.capacity(), 3}, DType::f32));
  for (BinaryOp op : k_ops) {
    for (Join join : k_joins) {
      const SparseTensor y = ops::sparse_binary(op, a, b, {.join = join, .lhs_fill = k_inf, .rhs_fill = 5});
      EXPECT_EQ(y.key(), a.key());
      // Row-wise: same as the join of two equal sets (every row matched).
      expect_binary(y, a, b, op, Join::inner, 0, 0);
    }
  }
}

TEST(SparseBinary, IdenticalSetsWithDifferentKeys) {
  Rng rng(5);
  auto m = CoordinateManager::create();
  const auto coords = random_coords(rng, 2, -2, 2, {1, 1, 1}, 0.5);
  const SparseTensor a = make_tensor(coords, random_values(rng, coords.size() * 2), 2, DType::f64, m);
  const SparseTensor b = make_tensor(coords, random_values(rng, coords.size() * 2), 2, DType::f64, m);
  ASSERT_NE(a.key(), b.key());
  for (Join join : k_joins) {
    const SparseTensor y = ops::sparse_binary(BinaryOp::add, a, b, {.join = join, .lhs_fill = 9, .rhs_fill = 9});
    EXPECT_EQ(y.rows(), a.rows());
    EXPECT_EQ(coords_from_array(y.coords(), y.rows()), coords);
    expect_binary(y, a, b, BinaryOp::add, join, 9, 9);
  }
}

TEST(SparseBinary, DisjointAndEmptySides) {
  auto m = CoordinateManager::create();
  const std::vector<Coord> lc{{0, 1, 2, 3}, {1, -5, 0, 7}};
  const std::vector<Coord> rc{{0, 1, 2, 4}, {2, 0, 0, 0}, {1, -5, 0, 6}};
  const SparseTensor l = make_tensor(lc, {1, 2, 3, 4}, 2, DType::f32, m);
  const SparseTensor r = make_tensor(rc, {5, 6, 7, 8, 9, 10}, 2, DType::f32, m);
  const SparseTensor e = make_tensor({}, {}, 2, DType::f32, m);
  const SparseTensor e2 = make_tensor({}, {}, 2, DType::f32, m);
  for (BinaryOp op : k_ops) {
    for (Join join : k_joins) {
      SCOPED_TRACE(std::string(ops::binary_op_name(op)) + " " + std::string(ops::join_name(join)));
      const ops::BinaryParams p{.join = join, .lhs_fill = -1.5, .rhs_fill = 2.0};
      expect_binary(ops::sparse_binary(op, l, r, p), l, r, op, join, -1.5, 2.0);
      expect_binary(ops::sparse_binary(op, l, e, p), l, e, op, join, -1.5, 2.0);
      expect_binary(ops::sparse_binary(op, e, r, p), e, r, op, join, -1.5, 2.0);
      expect_binary(ops::sparse_binary(op, e, e2, p), e, e2, op, join, -1.5, 2.0);
    }
  }
  EXPECT_EQ(ops::sparse_binary(BinaryOp::mul, l, r).rows(), 0);
  EXPECT_EQ(ops::sparse_binary(BinaryOp::add, l, r).rows(), 5);
}

TEST(SparseBinary, NegativeLargeCoordinatesAndStride) {
  auto m = CoordinateManager::create();
  const int big = 131071 * 2;  // the largest logical value at stride 2
  const std::vector<Coord> lc{{1022, -big - 2, big, 0}, {0, 2, 4, -6}, {5, 0, 0, 0}};
  const std::vector<Coord> rc{{5, 0, 0, 0}, {1022, -big - 2, big, 0}, {3, -262144, 2, 2}};
  const SparseTensor l = make_tensor(lc, {1, 2, 3}, 1, DType::f64, m, Int3{2});
  const SparseTensor r = make_tensor(rc, {10, 20, 30}, 1, DType::f64, m, Int3{2});
  for (Join join : k_joins)
    expect_binary(ops::sparse_binary(BinaryOp::sub, l, r, {.join = join}), l, r, BinaryOp::sub, join, 0, 0);
  const SparseTensor y = l + r;
  EXPECT_EQ(y.stride(), Int3{2});
  EXPECT_EQ(to_doubles(y.feats()), (std::vector<double>{21, 2, 13, 30}));
}

TEST(SparseBinary, MaxMinPropagateNaN) {
  auto m = CoordinateManager::create();
  const double nan = std::nan("");
  const std::vector<Coord> c{{0, 0, 0, 0}, {0, 1, 0, 0}, {0, 2, 0, 0}};
  const SparseTensor a = make_tensor(c, {nan, 1, 0.0}, 1, DType::f32, m);
  const SparseTensor b = make_tensor(c, {1, nan, -0.0}, 1, DType::f32, m);
  for (BinaryOp op : {BinaryOp::maximum, BinaryOp::minimum}) {
    const auto v = to_doubles(ops::sparse_binary(op, a, b).feats());
    EXPECT_TRUE(std::isnan(v[0]));
    EXPECT_TRUE(std::isnan(v[1]));
    EXPECT_EQ(v[2], 0.0);
  }
}

TEST(SparseBinary, BatchCountsRecomputed) {
  auto m = CoordinateManager::create();
  const SparseTensor l = make_tensor({{0, 0, 0, 0}, {2, 0, 0, 0}}, {1, 2}, 1, DType::f32, m);
  const SparseTensor r = make_tensor({{2, 0, 0, 0}, {1, 1, 1, 1}, {3, 0, 0, 0}}, {1, 2, 3}, 1, DType::f32, m);
  const SparseTensor outer = l + r;
  ASSERT_TRUE(outer.batch_counts().has_value());
  EXPECT_EQ(outer.batch_counts()->to_vector<std::int32_t>(), (std::vector<std::int32_t>{1, 1, 1, 1}));
  const SparseTensor inner = l * r;
  ASSERT_TRUE(inner.batch_counts().has_value());
  EXPECT_EQ(inner.batch_counts()->to_vector<std::int32_t>(), (std::vector<std::int32_t>{0, 0, 1}));
}

TEST(SparseBinary, InputsNotMutated) {
  Rng rng(9);
  auto m = CoordinateManager::create();
  const SparseTensor a = random_tensor(rng, 2, -3, 3, 0.3, 3, DType::f32, m);
  const SparseTensor b = random_tensor(rng, 2, -3, 3, 0.3, 3, DType::f32, m);
  const auto before = {bytes_of(a.coords()), bytes_of(a.feats()), bytes_of(b.coords()), bytes_of(b.feats())};
  for (BinaryOp op : k_ops) (void)ops::sparse_binary(op, a, b, {.join = Join::outer, .lhs_fill = 1, .rhs_fill = 2});
  const auto after = {bytes_of(a.coords()), bytes_of(a.feats()), bytes_of(b.coords()), bytes_of(b.feats())};
  EXPECT_TRUE(std::equal(before.begin(), before.end(), after.begin()));
}

TEST(SparseBinary, TraceRecordsTheRoute) {
  Rng rng(13);
  auto m = CoordinateManager::create();
  const SparseTensor a = random_tensor(rng, 2, -3, 3, 0.3, 3, DType::f32, m);
  const SparseTensor b = random_tensor(rng, 2, -3, 3, 0.3, 3, DType::f32, m);
  TraceSession trace;
  const SparseTensor y = a + b;
  (void)ops::sparse_binary(BinaryOp::mul, a, a);
  const auto& records = trace.records();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].op, "sparse_binary");
  EXPECT_EQ(records[0].route, "outer");
  EXPECT_EQ(records[0].rows_in, a.rows());
  EXPECT_EQ(records[0].rows_out, y.rows());
  EXPECT_EQ(records[0].channels_out, 3);
  EXPECT_EQ(records[1].route, "same_key");
}

TEST(AlignSparse, RowMapsMatchReference) {
  int seed = 100;
  for (Join join : k_joins) {
    for (int batches : {1, 3}) {
      Rng rng(static_cast<std::uint64_t>(++seed));
      auto m = CoordinateManager::create();
      const SparseTensor l = random_tensor(rng, batches, -5, 5, 0.1, 2, DType::f32, m, Int3{1, 2, 3});
      const SparseTensor r = random_tensor(rng, batches, -5, 5, 0.1, 2, DType::f32, m, Int3{1, 2, 3});
      const ops::AlignedRows a = ops::align_sparse(l, r, join);
      const auto pairs =
          ref_join(coords_from_array(l.coords(), l.rows()), coords_from_array(r.coords(), r.rows()), join);
      ASSERT_EQ(a.coords.rows(), static_cast<std::int64_t>(pairs.size()));
      EXPECT_EQ(a.coords.channels(), 0);
      EXPECT_EQ(a.coords.stride(), (Int3{1, 2, 3}));
      const auto lr = a.lhs_rows.to_vector<std::int32_t>(), rr = a.rhs_rows.to_vector<std::int32_t>();
      ASSERT_EQ(static_cast<std::int64_t>(lr.size()), a.coords.capacity());
      for (std::size_t o = 0; o < pairs.size(); ++o) {
        EXPECT_EQ(lr[o], pairs[o].first);
        EXPECT_EQ(rr[o], pairs[o].second);
      }
    }
  }
}

TEST(AlignSparse, CapacityRowsAreAbsent) {
  auto m = CoordinateManager::create();
  // Three rows of capacity, two active; the inactive row must never match.
  const SparseTensor l =
      SparseTensor::from_coords(coords_array({{0, 0, 0, 0}, {0, 1, 0, 0}, {0, 9, 9, 9}}),
                                make_array({1, 2, 3}, Shape{3, 1}, DType::f32), {.manager = m, .active_rows = 2});
  const SparseTensor r = make_tensor({{0, 9, 9, 9}, {0, 1, 0, 0}}, {10, 20}, 1, DType::f32, m);
  const auto left = ops::align_sparse(l, r, Join::left);
  EXPECT_EQ(left.coords.key(), l.key());
  EXPECT_EQ(left.lhs_rows.to_vector<std::int32_t>(), (std::vector<std::int32_t>{0, 1, -1}));
  EXPECT_EQ(left.rhs_rows.to_vector<std::int32_t>(), (std::vector<std::int32_t>{-1, 1, -1}));
  const auto outer = ops::align_sparse(l, r, Join::outer);
  EXPECT_EQ(outer.lhs_rows.to_vector<std::int32_t>(), (std::vector<std::int32_t>{0, 1, -1}));
  EXPECT_EQ(outer.rhs_rows.to_vector<std::int32_t>(), (std::vector<std::int32_t>{-1, 1, 0}));
  const SparseTensor y = ops::sparse_binary(BinaryOp::add, l, r, {.join = Join::left, .rhs_fill = 100});
  EXPECT_EQ(to_doubles(y.feats()), (std::vector<double>{101, 22, 0}));
  const auto same = ops::align_sparse(l, l, Join::outer);
  EXPECT_EQ(same.coords.key(), l.key());
  EXPECT_EQ(same.lhs_rows.to_vector<std::int32_t>(), (std::vector<std::int32_t>{0, 1, -1}));
}

TEST(GatherAlignedFeatures, FillsAbsentRows) {
  auto m = CoordinateManager::create();
  for (DType dtype : {DType::f32, DType::f16, DType::f64}) {
    const SparseTensor x = make_tensor({{0, 0, 0, 0}, {1, 0, 0, 0}}, {1, 2, 3, 4}, 2, dtype, m);
    const Array rows = Array::from_vector<std::int32_t>({1, -1, 0, 1}, Shape{4});
    const Array g = ops::gather_aligned_features(x, rows, -k_inf);
    EXPECT_EQ(g.shape(), (Shape{4, 2}));
    EXPECT_EQ(g.dtype(), dtype);
    EXPECT_EQ(to_doubles(g), (std::vector<double>{3, 4, -k_inf, -k_inf, 1, 2, 3, 4}));
    EXPECT_EQ(ops::gather_aligned_features(x, Array::from_vector<std::int32_t>({}, Shape{0})).dim(0), 0);
  }
}

TEST(ReindexSparse, FeaturesOnTargetKey) {
  Rng rng(21);
  auto m = CoordinateManager::create();
  for (DType dtype : {DType::f32, DType::f16, DType::f64}) {
    const SparseTensor x = random_tensor(rng, 2, -3, 3, 0.3, 3, dtype, m, Int3{2});
    const SparseTensor t = random_tensor(rng, 2, -3, 3, 0.3, 1, dtype, m, Int3{2});
    const SparseTensor y = ops::reindex_sparse(x, t, 7.0);
    EXPECT_EQ(y.key(), t.key());
    EXPECT_EQ(y.channels(), 3);
    std::map<Coord, std::int64_t> xm;
    const auto xc = coords_from_array(x.coords(), x.rows());
    for (std::size_t i = 0; i < xc.size(); ++i) xm[xc[i]] = static_cast<std::int64_t>(i);
    const auto xv = to_doubles(x.feats()), yv = to_doubles(y.feats());
    const auto tc = coords_from_array(t.coords(), t.rows());
    for (std::size_t o = 0; o < tc.size(); ++o) {
      const auto it = xm.find(tc[o]);
      for (std::size_t k = 0; k < 3; ++k) {
        EXPECT_EQ(yv[o * 3 + k], it == xm.end() ? 7.0 : xv[static_cast<std::size_t>(it->second) * 3 + k]);
      }
    }
    EXPECT_EQ(ops::reindex_sparse(x, x).key(), x.key());
  }
}

TEST(SparseAlgebraErrors, EveryPath) {
  auto m = CoordinateManager::create();
  auto other = CoordinateManager::create();
  const std::vector<Coord> c{{0, 0, 0, 0}, {0, 2, 2, 2}};
  const SparseTensor a = make_tensor(c, {1, 2, 3, 4}, 2, DType::f32, m, Int3{2});
  const SparseTensor s1 = make_tensor(c, {1, 2, 3, 4}, 2, DType::f32, m, Int3{1});
  const SparseTensor ch3 = make_tensor(c, {1, 2, 3, 4, 5, 6}, 3, DType::f32, m, Int3{2});
  const SparseTensor h = make_tensor(c, {1, 2, 3, 4}, 2, DType::f16, m, Int3{2});
  const SparseTensor om = make_tensor(c, {1, 2, 3, 4}, 2, DType::f32, other, Int3{2});
  const auto bin = [&](const SparseTensor& r) { return ops::sparse_binary(BinaryOp::add, a, r); };
  expect_error<ValueError>(m, [&] { bin(s1); }, {"[sparse_binary]", "'rhs'", "stride (1, 1, 1)", "(2, 2, 2)"});
  expect_error<ValueError>(m, [&] { bin(ch3); }, {"[sparse_binary]", "'rhs'", "3 channels", "lhs has 2"});
  expect_error<TypeError>(m, [&] { bin(h); }, {"[sparse_binary]", "'rhs'", "float16"});
  expect_error<ValueError>(m, [&] { bin(om); }, {"[sparse_binary]", "'rhs'", "manager"});
  expect_error<ValueError>(m, [&] { bin(SparseTensor()); }, {"[sparse_binary]", "'rhs'", "undefined"});
  expect_error<ValueError>(m, [&] { ops::sparse_binary(static_cast<BinaryOp>(9), a, a); },
                           {"[sparse_binary]", "'op'", "unknown binary op 9"});
  expect_error<ValueError>(m, [&] { ops::sparse_binary(BinaryOp::add, a, a, {.join = static_cast<Join>(7)}); },
                           {"[sparse_binary]", "'join'", "unknown join 7"});
  expect_error<ValueError>(m, [&] { ops::align_sparse(a, s1, Join::inner); }, {"[align_sparse]", "'rhs'", "stride"});
  expect_error<ValueError>(m, [&] { ops::align_sparse(a, om, Join::inner); }, {"[align_sparse]", "'rhs'", "manager"});
  expect_error<ValueError>(m, [&] { ops::align_sparse(a, a, static_cast<Join>(3)); },
                           {"[align_sparse]", "'join'", "unknown join 3"});
  expect_error<ValueError>(m, [&] { ops::reindex_sparse(a, s1); }, {"[reindex_sparse]", "'target'", "stride"});
  expect_error<ValueError>(m, [&] { ops::reindex_sparse(a, om); }, {"[reindex_sparse]", "'target'", "manager"});
  const auto g = [&](const Array& rows) { return ops::gather_aligned_features(a, rows); };
  expect_error<TypeError>(m, [&] { g(Array::from_vector<std::int64_t>({0}, Shape{1})); },
                          {"[gather_aligned_features]", "'rows'", "int32"});
  expect_error<ValueError>(m,
                           [&] {
                             g(Array::from_vector<std::int32_t>({0, 1}, Shape{1, 2}));
                           },
                           {"[gather_aligned_features]", "'rows'", "1-D"});
  expect_error<ValueError>(m,
                           [&] {
                             g(Array::from_vector<std::int32_t>({0, 2}, Shape{2}));
                           },
                           {"[gather_aligned_features]", "'rows'", "entry 1 is 2", "[-1, 2)"});
  expect_error<ValueError>(m, [&] { g(Array::from_vector<std::int32_t>({-2}, Shape{1})); },
                           {"[gather_aligned_features]", "'rows'", "entry 0 is -2"});
  expect_error<ValueError>(m, [&] { g(Array()); }, {"[gather_aligned_features]", "'rows'", "undefined"});
}

}  // namespace
}  // namespace lattice::testing

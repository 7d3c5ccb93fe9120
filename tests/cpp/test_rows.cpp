// Row selection (prune, prune_mask, crop, topk_rows, replace_feature) against
// naive references written here: per element, exact (rows are copied, so
// coordinates and features must match bitwise), over random tensors whose
// batch items are shuffled (non-contiguous), plus edge cases and every error path.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <set>

#include <gtest/gtest.h>

#include "lattice/ops/conv.hpp"
#include "lattice/ops/rows.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

struct Input {
  std::vector<Coord> coords;
  std::vector<double> feats;  // rounded to the dtype
  std::int64_t channels = 0;
  SparseTensor x;
};

Input make_input(Rng& rng, int batches, int lo, int hi, int stride, double density, std::int64_t channels, DType dtype,
                 const std::vector<double>& value_pool = {}) {
  Input in;
  in.coords = random_coords(rng, batches, lo, hi, {stride, stride, stride}, density);
  in.channels = channels;
  const auto n = static_cast<std::int64_t>(in.coords.size());
  std::vector<double> v = random_values(rng, static_cast<std::size_t>(n * channels));
  if (!value_pool.empty()) {
    for (double& e : v) e = value_pool[static_cast<std::size_t>(rng.integer(0, std::ssize(value_pool) - 1))];
  }
  const Array feats = make_array(v, Shape{n, channels}, dtype);
  in.feats = to_doubles(feats);
  in.x = SparseTensor::from_coords(coords_array(in.coords), feats,
                                   {.stride = Int3{stride}, .manager = CoordinateManager::create()});
  return in;
}

// The expected output of selecting `rows` (in order) from `in`.
void expect_selection(const Input& in, const SparseTensor& y, const std::vector<std::int64_t>& rows) {
  ASSERT_TRUE(y.defined());
  ASSERT_EQ(y.rows(), std::ssize(rows));
  EXPECT_EQ(y.stride(), in.x.stride());
  EXPECT_EQ(y.dtype(), in.x.dtype());
  EXPECT_EQ(y.channels(), in.channels);
  EXPECT_EQ(y.manager(), in.x.manager());
  EXPECT_NE(y.key(), in.x.key()) << "a subset must get a new key";
  EXPECT_TRUE(in.x.manager()->owns(y.key()));
  const auto got = coords_from_array(y.coords(), y.rows());
  const auto feats = to_doubles(y.feats());
  std::map<int, std::int32_t> counts;
  for (std::size_t j = 0; j < rows.size(); ++j) {
    const auto r = static_cast<std::size_t>(rows[j]);
    EXPECT_EQ(got[j], in.coords[r]) << "output row " << j;
    ++counts[in.coords[r][0]];
    for (std::int64_t c = 0; c < in.channels; ++c) {
      const double a = feats[j * static_cast<std::size_t>(in.channels) + static_cast<std::size_t>(c)];
      const double e = in.feats[r * static_cast<std::size_t>(in.channels) + static_cast<std::size_t>(c)];
      EXPECT_TRUE(a == e || (std::isnan(a) && std::isnan(e)))
          << "row " << j << " channel " << c << ": " << a << " != " << e;
    }
  }
  // batch_counts recomputed from the batch column.
  ASSERT_TRUE(y.batch_counts().has_value());
  const auto bc = y.batch_counts()->to_vector<std::int32_t>();
  const int b_expect = counts.empty() ? 0 : counts.rbegin()->first + 1;
  ASSERT_EQ(std::ssize(bc), b_expect);
  for (int b = 0; b < b_expect; ++b) EXPECT_EQ(bc[static_cast<std::size_t>(b)], counts.count(b) ? counts[b] : 0);
  // Unique coordinates.
  const std::set<Coord> unique(got.begin(), got.end());
  EXPECT_EQ(unique.size(), got.size());
}

// ---- references -------------------------------------------------------------

std::vector<std::int64_t> ref_crop(const std::vector<Coord>& coords, I3 lo, I3 hi) {
  std::vector<std::int64_t> out;
  for (std::size_t r = 0; r < coords.size(); ++r) {
    const Coord& c = coords[r];
    if (c[1] >= lo[0] && c[1] <= hi[0] && c[2] >= lo[1] && c[2] <= hi[1] && c[3] >= lo[2] && c[3] <= hi[2])
      out.push_back(static_cast<std::int64_t>(r));
  }
  return out;
}

std::vector<std::int64_t> ref_topk(const Input& in, const std::vector<std::int64_t>& counts, double rho) {
  std::map<int, std::vector<std::int64_t>> by_batch;
  for (std::size_t r = 0; r < in.coords.size(); ++r) by_batch[in.coords[r][0]].push_back(static_cast<std::int64_t>(r));
  std::vector<std::int64_t> out;
  for (auto& [b, rows] : by_batch) {
    auto score = [&](std::int64_t r) { return in.feats[static_cast<std::size_t>(r * in.channels)]; };
    std::sort(rows.begin(), rows.end(), [&](std::int64_t p, std::int64_t q) {
      if (score(p) != score(q)) return score(p) > score(q);
      return p < q;
    });
    const auto want =
        static_cast<std::int64_t>(std::floor(static_cast<double>(counts[static_cast<std::size_t>(b)]) * rho));
    const std::int64_t k = std::min<std::int64_t>(want, std::ssize(rows));
    out.insert(out.end(), rows.begin(), rows.begin() + k);
  }
  return out;
}

std::vector<std::int64_t> random_subset(Rng& rng, std::int64_t n, std::int64_t m) {
  std::vector<std::int64_t> all(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) all[static_cast<std::size_t>(i)] = i;
  std::shuffle(all.begin(), all.end(), rng.engine());
  all.resize(static_cast<std::size_t>(m));
  return all;
}

Array index_array(const std::vector<std::int64_t>& v, DType dtype) {
  const Shape s{static_cast<std::int64_t>(v.size())};
  if (dtype == DType::i64) return Array::from_vector(v, s, Device::cpu());
  std::vector<std::int32_t> w(v.begin(), v.end());
  return Array::from_vector(w, s, Device::cpu());
}

// ---- random cases ---------------------------------------------------------------

struct RowsCase {
  DType dtype;
  int batches;
  int stride;
  std::int64_t channels;
};

std::string case_name(const ::testing::TestParamInfo<RowsCase>& info) {
  const RowsCase& c = info.param;
  return std::string(dtype_name(c.dtype)) + "_b" + std::to_string(c.batches) + "_s" + std::to_string(c.stride) + "_c" +
         std::to_string(c.channels);
}

class RowsAgainstReference : public ::testing::TestWithParam<RowsCase> {
 protected:
  Input input(std::uint64_t salt, const std::vector<double>& pool = {}) {
    const RowsCase& c = GetParam();
    Rng rng(salt * 7919 + static_cast<std::uint64_t>(c.batches * 31 + c.stride * 7 + c.channels) +
            static_cast<std::uint64_t>(c.dtype) * 1000);
    return make_input(rng, c.batches, -5, 4, c.stride, 0.35, c.channels, c.dtype, pool);
  }
};

TEST_P(RowsAgainstReference, Prune) {
  for (DType index_dtype : {DType::i32, DType::i64}) {
    Input in = input(1);
    Rng rng(5);
    const std::int64_t n = in.x.rows();
    for (std::int64_t m : {std::int64_t{0}, std::int64_t{1}, n / 3, n}) {
      const auto rows = random_subset(rng, n, m);
      const Array idx = index_array(rows, index_dtype);
      const auto before = bytes_of(idx);
      const auto feats_before = bytes_of(in.x.feats());
      expect_selection(in, ops::prune(in.x, idx), rows);
      EXPECT_EQ(bytes_of(idx), before);
      EXPECT_EQ(bytes_of(in.x.feats()), feats_before);
    }
  }
}

TEST_P(RowsAgainstReference, PruneMask) {
  Input in = input(2);
  Rng rng(6);
  const std::int64_t n = in.x.rows();
  for (DType mask_dtype : {DType::u8, DType::i32, DType::i64}) {
    for (double p : {0.0, 0.4, 1.0}) {
      std::vector<std::int64_t> expect;
      std::vector<std::int64_t> m(static_cast<std::size_t>(n));
      for (std::int64_t r = 0; r < n; ++r) {
        // Values other than 1 count as true too.
        m[static_cast<std::size_t>(r)] = rng.uniform(0, 1) < p ? rng.integer(1, 5) : 0;
        if (m[static_cast<std::size_t>(r)] != 0) expect.push_back(r);
      }
      Array mask;
      if (mask_dtype == DType::u8) {
        mask = Array::from_vector(std::vector<std::uint8_t>(m.begin(), m.end()), Shape{n}, Device::cpu());
      } else {
        mask = index_array(m, mask_dtype);
      }
      expect_selection(in, ops::prune_mask(in.x, mask), expect);
    }
  }
}

TEST_P(RowsAgainstReference, Crop) {
  Input in = input(3);
  const int s = GetParam().stride;
  // Boxes: inside, clipping, negative-only, a single site, off the lattice bounds, everything.
  const std::vector<std::pair<I3, I3>> boxes{{{-2 * s, -3 * s, -1 * s}, {2 * s, 1 * s, 3 * s}},
                                             {{-5 * s, -5 * s, -5 * s}, {-1, -1, -1}},
                                             {{s, 0, -s}, {s, 0, -s}},
                                             {{-s + 1, -100, 0}, {2 * s - 1, 100, 4 * s}},
                                             {{-1000, -1000, -1000}, {1000, 1000, 1000}},
                                             {{50, 50, 50}, {60, 60, 60}}};
  for (const auto& [lo, hi] : boxes) {
    expect_selection(in, ops::crop(in.x, {lo[0], lo[1], lo[2]}, {hi[0], hi[1], hi[2]}), ref_crop(in.coords, lo, hi));
  }
}

TEST_P(RowsAgainstReference, TopK) {
  // Few distinct values so that ties occur; -0 and +0 must tie too.
  Input in = input(4, {-0.0, 0.0, 0.5, -0.5, 1.0, 0.25});
  const int batches = GetParam().batches;
  Rng rng(8);
  for (double rho : {0.0, 0.3, 0.5, 1.0, 2.5}) {
    for (DType count_dtype : {DType::i32, DType::i64}) {
      std::vector<std::int64_t> counts(static_cast<std::size_t>(batches + 1));  // one spare entry
      for (auto& c : counts) c = rng.integer(0, 200);
      expect_selection(in, ops::topk_rows(in.x, index_array(counts, count_dtype), rho), ref_topk(in, counts, rho));
    }
  }
}

TEST_P(RowsAgainstReference, TopKDistinctScores) {
  Input in = input(5);
  std::vector<std::int64_t> counts(static_cast<std::size_t>(GetParam().batches), 1000);
  expect_selection(in, ops::topk_rows(in.x, index_array(counts, DType::i64), 0.37), ref_topk(in, counts, 0.37));
}

TEST_P(RowsAgainstReference, ReplaceFeature) {
  Input in = input(6);
  Rng rng(9);
  const std::int64_t n = in.x.rows();
  for (DType dtype : {DType::f32, DType::f16, DType::f64}) {
    for (std::int64_t c2 : {std::int64_t{1}, std::int64_t{7}}) {
      const auto v = random_values(rng, static_cast<std::size_t>(n * c2));
      const Array f = make_array(v, Shape{n, c2}, dtype);
      const SparseTensor y = ops::replace_feature(in.x, f);
      EXPECT_EQ(y.key(), in.x.key()) << "replace_feature keeps the coordinate key";
      EXPECT_EQ(y.coordinate_set(), in.x.coordinate_set());
      EXPECT_EQ(y.dtype(), dtype);
      EXPECT_EQ(y.channels(), c2);
      EXPECT_TRUE(y.feats().shares_buffer_with(f));
      EXPECT_EQ(to_doubles(y.feats()), to_doubles(f));
    }
  }
}

std::vector<RowsCase> rows_cases() {
  std::vector<RowsCase> out;
  const std::vector<DType> dtypes{DType::f32, DType::f16, DType::f64};
  int i = 0;
  for (int batches : {1, 3, 5}) {
    for (int stride : {1, 2}) {
      out.push_back({dtypes[static_cast<std::size_t>(i) % 3], batches, stride, i % 2 ? 1 : 6});
      ++i;
    }
  }
  out.push_back({DType::f64, 4, 1, 3});
  out.push_back({DType::f16, 2, 4, 2});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Rows, RowsAgainstReference, ::testing::ValuesIn(rows_cases()), case_name);

// ---- edge cases -------------------------------------------------------------

SparseTensor tensor(const std::vector<Coord>& coords, const std::vector<double>& feats, std::int64_t channels,
                    DType dtype = DType::f32, int stride = 1) {
  return SparseTensor::from_coords(coords_array(coords),
                                   make_array(feats, Shape{static_cast<std::int64_t>(coords.size()), channels}, dtype),
                                   {.stride = Int3{stride}, .manager = CoordinateManager::create()});
}

TEST(RowsEdge, EmptyTensor) {
  const SparseTensor x = tensor({}, {}, 3);
  EXPECT_EQ(ops::prune(x, index_array({}, DType::i32)).rows(), 0);
  EXPECT_EQ(ops::prune_mask(x, Array::from_vector(std::vector<std::uint8_t>{}, Shape{0}, Device::cpu())).rows(), 0);
  EXPECT_EQ(ops::crop(x, Int3{-5}, Int3{5}).rows(), 0);
  EXPECT_EQ(ops::topk_rows(x, index_array({}, DType::i64), 1.0).rows(), 0);
  const SparseTensor y = ops::topk_rows(x, index_array({4, 2}, DType::i64), 1.0);
  EXPECT_EQ(y.rows(), 0);
  EXPECT_EQ(y.batch_counts()->numel(), 0);
  EXPECT_EQ(ops::replace_feature(x, Array::zeros(Shape{0, 5}, DType::f16, Device::cpu())).channels(), 5);
}

TEST(RowsEdge, OneRow) {
  const std::vector<Coord> c{{2, -7, 131071, -131072}};
  const SparseTensor x = tensor(c, {1.5, -2.0}, 2);
  const SparseTensor p = ops::prune(x, index_array({0}, DType::i64));
  EXPECT_EQ(coords_from_array(p.coords(), p.rows()), c);
  EXPECT_EQ(p.batch_counts()->to_vector<std::int32_t>(), (std::vector<std::int32_t>{0, 0, 1}));
  EXPECT_EQ(ops::crop(x, {-7, 131071, -131072}, {-7, 131071, -131072}).rows(), 1);
  EXPECT_EQ(ops::crop(x, {-6, 0, -131072}, {0, 131071, 0}).rows(), 0);
  EXPECT_EQ(ops::topk_rows(x, index_array({0, 0, 1}, DType::i32), 1.0).rows(), 1);
  EXPECT_EQ(ops::topk_rows(x, index_array({0, 0, 1}, DType::i32), 0.99).rows(), 0);
  EXPECT_EQ(to_doubles(ops::topk_rows(x, index_array({0, 0, 1}, DType::i32), 1.0).feats()),
            (std::vector<double>{1.5, -2.0}));
}

TEST(RowsEdge, TopKClampsAndNonContiguousBatches) {
  // Batch 1 rows interleaved with batch 0 rows; scores chosen by hand.
  const std::vector<Coord> c{{1, 0, 0, 0}, {0, 0, 0, 0}, {1, 1, 0, 0}, {0, 1, 0, 0}, {1, 2, 0, 0}, {0, 2, 0, 0}};
  const SparseTensor x = tensor(c, {3.0, 1.0, 5.0, 2.0, 3.0, 9.0}, 1);
  // counts 10 * 0.5 = 5 > 3 rows: clamped to every row of both items.
  const SparseTensor all = ops::topk_rows(x, index_array({10, 10}, DType::i64), 0.5);
  EXPECT_EQ(coords_from_array(all.coords(), all.rows()),
            (std::vector<Coord>{{0, 2, 0, 0}, {0, 1, 0, 0}, {0, 0, 0, 0}, {1, 1, 0, 0}, {1, 0, 0, 0}, {1, 2, 0, 0}}));
  EXPECT_EQ(to_doubles(all.feats()), (std::vector<double>{9.0, 2.0, 1.0, 5.0, 3.0, 3.0}));  // tie 3.0: row 0 first
  // k = floor(3 * 0.5) = 1 for batch 0, floor(5 * 0.5) = 2 for batch 1.
  const SparseTensor some = ops::topk_rows(x, index_array({3, 5}, DType::i32), 0.5);
  EXPECT_EQ(coords_from_array(some.coords(), some.rows()),
            (std::vector<Coord>{{0, 2, 0, 0}, {1, 1, 0, 0}, {1, 0, 0, 0}}));
  EXPECT_EQ(some.batch_counts()->to_vector<std::int32_t>(), (std::vector<std::int32_t>{1, 2}));
  // rho = 0 keeps nothing.
  EXPECT_EQ(ops::topk_rows(x, index_array({3, 5}, DType::i32), 0.0).rows(), 0);
  // Infinite scores order like numbers.
  const SparseTensor inf =
      tensor({{0, 0, 0, 0}, {0, 1, 0, 0}, {0, 2, 0, 0}},
             {-std::numeric_limits<double>::infinity(), 0.0, std::numeric_limits<double>::infinity()}, 1);
  const SparseTensor top = ops::topk_rows(inf, index_array({2}, DType::i32), 1.0);
  EXPECT_EQ(to_doubles(top.feats()), (std::vector<double>{std::numeric_limits<double>::infinity(), 0.0}));
}

TEST(RowsEdge, ActiveRowsBelowCapacity) {
  // Capacity 4, 3 active rows: the spare row is never selected.
  const std::vector<Coord> c{{0, 0, 0, 0}, {0, 1, 0, 0}, {0, 2, 0, 0}, {0, 3, 0, 0}};
  const SparseTensor x = SparseTensor::from_coords(coords_array(c), make_array({1, 2, 3, 4}, Shape{4, 1}, DType::f32),
                                                   {.manager = CoordinateManager::create(), .active_rows = 3});
  EXPECT_EQ(ops::crop(x, Int3{-10}, Int3{10}).rows(), 3);
  EXPECT_EQ(ops::topk_rows(x, index_array({9}, DType::i32), 1.0).rows(), 3);
  EXPECT_EQ(ops::prune_mask(x, Array::full(Shape{4}, DType::u8, 1, Device::cpu())).rows(), 3);
  EXPECT_EQ(ops::prune_mask(x, Array::full(Shape{3}, DType::u8, 1, Device::cpu())).rows(), 3);
  // replace_feature with exactly the active rows pads to the capacity.
  const SparseTensor y = ops::replace_feature(x, make_array({7, 8, 9}, Shape{3, 1}, DType::f64));
  EXPECT_EQ(y.key(), x.key());
  EXPECT_EQ(to_doubles(y.feats()), (std::vector<double>{7, 8, 9, 0}));
  // More rows than the capacity: the leading rows are used.
  const SparseTensor z = ops::replace_feature(x, make_array({1, 2, 3, 4, 5}, Shape{5, 1}, DType::f32));
  EXPECT_EQ(to_doubles(z.feats()), (std::vector<double>{1, 2, 3, 4}));
}

TEST(RowsEdge, PrunedTensorSupportsRelations) {
  // A subm conv on the pruned tensor equals one on a tensor built from the same rows.
  Rng rng(77);
  Input in = make_input(rng, 3, -4, 4, 2, 0.4, 4, DType::f64);
  const auto rows = random_subset(rng, in.x.rows(), in.x.rows() / 2);
  const SparseTensor p = ops::prune(in.x, index_array(rows, DType::i64));
  std::vector<Coord> sub;
  std::vector<double> sub_feats;
  for (auto r : rows) {
    sub.push_back(in.coords[static_cast<std::size_t>(r)]);
    for (int c = 0; c < 4; ++c) sub_feats.push_back(in.feats[static_cast<std::size_t>(r * 4 + c)]);
  }
  const SparseTensor q = tensor(sub, sub_feats, 4, DType::f64, 2);
  const Array w = make_array(random_values(rng, 27 * 4 * 3), Shape{27, 4, 3}, DType::f64);
  const auto a = to_doubles(ops::subm_conv3d(p, w).feats());
  const auto b = to_doubles(ops::subm_conv3d(q, w).feats());
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-12) << i;
  // Cropped and top-k tensors too (their relations build and run).
  const SparseTensor cr = ops::crop(in.x, Int3{-4}, Int3{4});
  EXPECT_EQ(ops::subm_conv3d(cr, w).rows(), cr.rows());
  const SparseTensor tk = ops::topk_rows(in.x, index_array({5, 5, 5}, DType::i32), 1.0);
  EXPECT_EQ(ops::subm_conv3d(tk, w).rows(), tk.rows());
}

// ---- errors -------------------------------------------------------------------

class RowsErrors : public ::testing::Test {
 protected:
  RowsErrors()
      : x(SparseTensor::from_coords(coords_array({{0, 0, 0, 0}, {1, 1, 0, 0}, {0, 2, 0, 0}}),
                                    make_array({1, 2, 3, 4, 5, 6}, Shape{3, 2}, DType::f32),
                                    {.manager = CoordinateManager::create()})) {}
  SparseTensor x;
};

TEST_F(RowsErrors, Prune) {
  expect_error<TypeError>([&] { ops::prune(x, Array::zeros(Shape{1}, DType::f32, Device::cpu())); },
                          {"[prune]", "'rows'", "int32 or int64", "float32"});
  expect_error<ValueError>(
      [&] {
        ops::prune(x, Array::zeros(Shape{1, 1}, DType::i32, Device::cpu()));
      },
      {"[prune]", "'rows'", "1-D", "(1, 1)"});
  expect_error<ValueError>(
      [&] {
        ops::prune(x, index_array({0, 3}, DType::i32));
      },
      {"[prune]", "'rows'", "entry 1 is 3", "[0, 3)"});
  expect_error<ValueError>([&] { ops::prune(x, index_array({-1}, DType::i64)); },
                           {"[prune]", "'rows'", "entry 0 is -1"});
  expect_error<ValueError>(
      [&] {
        ops::prune(x, index_array({2, 0, 2}, DType::i64));
      },
      {"[prune]", "'rows'", "entries 0 and 2", "row 2", "unique"});
  expect_error<ValueError>([&] { ops::prune(SparseTensor(), index_array({0}, DType::i32)); },
                           {"[prune]", "'x'", "undefined"});
  expect_error<ValueError>([&] { ops::prune(x, Array()); }, {"[prune]", "'rows'", "undefined"});
}

TEST_F(RowsErrors, PruneMask) {
  expect_error<TypeError>([&] { ops::prune_mask(x, Array::zeros(Shape{3}, DType::f64, Device::cpu())); },
                          {"[prune_mask]", "'mask'", "float64"});
  expect_error<ValueError>([&] { ops::prune_mask(x, Array::zeros(Shape{2}, DType::u8, Device::cpu())); },
                           {"[prune_mask]", "'mask'", "has 2 entries", "3 active rows"});
  expect_error<ValueError>(
      [&] {
        ops::prune_mask(x, Array::zeros(Shape{3, 1}, DType::u8, Device::cpu()));
      },
      {"[prune_mask]", "'mask'", "1-D"});
}

TEST_F(RowsErrors, Crop) {
  expect_error<ValueError>(
      [&] {
        ops::crop(x, {0, 5, 0}, {1, 4, 1});
      },
      {"[crop]", "'max_coord'", "(1, 4, 1)", "(0, 5, 0)", "axis y"});
}

TEST_F(RowsErrors, TopK) {
  const Array counts = index_array({1, 1}, DType::i32);
  expect_error<TypeError>([&] { ops::topk_rows(x, Array::zeros(Shape{2}, DType::f32, Device::cpu()), 1.0); },
                          {"[topk_rows]", "'counts'", "float32"});
  expect_error<ValueError>(
      [&] {
        ops::topk_rows(x, Array::zeros(Shape{2, 1}, DType::i32, Device::cpu()), 1.0);
      },
      {"[topk_rows]", "'counts'", "1-D"});
  for (double rho : {-0.5, std::nan(""), std::numeric_limits<double>::infinity()}) {
    expect_error<ValueError>([&] { ops::topk_rows(x, counts, rho); }, {"[topk_rows]", "'rho'", "finite"});
  }
  expect_error<ValueError>(
      [&] {
        ops::topk_rows(x, index_array({1, -2}, DType::i64), 1.0);
      },
      {"[topk_rows]", "'counts'", "entry 1 is -2"});
  expect_error<ValueError>([&] { ops::topk_rows(x, index_array({4}, DType::i64), 1.0); },
                           {"[topk_rows]", "'counts'", "1 entries", "row 1 has batch index 1"});
  const SparseTensor with_nan = x.replace_feats(make_array({1, 2, 3, 4, std::nan(""), 6}, Shape{3, 2}, DType::f16));
  expect_error<ValueError>([&] { ops::topk_rows(with_nan, counts, 1.0); },
                           {"[topk_rows]", "'x'", "row 2", "NaN score"});
  // A NaN outside the first channel is no score and is fine.
  const SparseTensor nan_elsewhere =
      x.replace_feats(make_array({1, std::nan(""), 3, 4, 5, 6}, Shape{3, 2}, DType::f32));
  EXPECT_EQ(ops::topk_rows(nan_elsewhere, counts, 1.0).rows(), 2);
  const SparseTensor no_channels = x.replace_feats(Array::zeros(Shape{3, 0}, DType::f32, Device::cpu()));
  expect_error<ValueError>([&] { ops::topk_rows(no_channels, counts, 1.0); },
                           {"[topk_rows]", "'x'", "no feature channel"});
}

TEST_F(RowsErrors, ReplaceFeature) {
  expect_error<TypeError>(
      [&] {
        ops::replace_feature(x, Array::zeros(Shape{3, 2}, DType::i32, Device::cpu()));
      },
      {"[replace_feature]", "'feats'", "int32"});
  expect_error<ValueError>([&] { ops::replace_feature(x, Array::zeros(Shape{3}, DType::f32, Device::cpu())); },
                           {"[replace_feature]", "'feats'", "(rows, C)"});
  expect_error<ValueError>(
      [&] {
        ops::replace_feature(x, Array::zeros(Shape{2, 4}, DType::f32, Device::cpu()));
      },
      {"[replace_feature]", "'feats'", "has 2 rows", "3 active rows"});
  expect_error<ValueError>(
      [&] {
        ops::replace_feature(SparseTensor(), Array::zeros(Shape{2, 4}, DType::f32));
      },
      {"[replace_feature]", "'x'", "undefined"});
}

}  // namespace
}  // namespace lattice::testing

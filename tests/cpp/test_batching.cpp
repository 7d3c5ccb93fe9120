// sparse_collate and the batch decomposition against plain-loop references:
// batch offsets, row order, batch_counts, duplicate merging (mean), empty
// inputs and items, and every error path.
#include <map>

#include <gtest/gtest.h>

#include "lattice/ops/batching.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

SparseTensor make_tensor(const std::vector<Coord>& coords, const std::vector<double>& values, int c, DType dtype,
                         const I3& s, const std::shared_ptr<CoordinateManager>& manager, bool unique = true) {
  return SparseTensor::from_coords(coords_array(coords),
                                   make_array(values, Shape{static_cast<std::int64_t>(coords.size()), c}, dtype),
                                   {.stride = Int3{s[0], s[1], s[2]}, .manager = manager, .check_unique = unique});
}

int batch_count_of(const std::vector<Coord>& coords) {
  int top = -1;
  for (const Coord& c : coords) top = std::max(top, c[0]);
  return std::max(1, top + 1);
}

class CollateRandom : public ::testing::TestWithParam<std::tuple<DType, int, int>> {};

TEST_P(CollateRandom, MatchesReference) {
  const auto [dtype, stride, inputs_n] = GetParam();
  Rng rng(static_cast<std::uint64_t>(static_cast<int>(dtype) * 100 + stride * 10 + inputs_n));
  auto manager = CoordinateManager::create();
  const I3 s{stride, stride, stride};
  const int c = 1 + static_cast<int>(rng.integer(0, 4));
  std::vector<SparseTensor> inputs;
  std::vector<Coord> expect_coords;
  std::vector<double> expect_feats;
  int offset = 0;
  for (int i = 0; i < inputs_n; ++i) {
    const int batches = static_cast<int>(rng.integer(1, 3));
    auto coords = random_coords(rng, batches, -5, 5, s, i == 1 ? 0.0 : 0.05);  // input 1 is empty
    const auto values = random_values(rng, coords.size() * static_cast<std::size_t>(c));
    inputs.push_back(make_tensor(coords, values, c, dtype, s, manager));
    const auto rounded = to_doubles(inputs.back().feats());
    for (Coord co : coords) {
      co[0] += offset;
      expect_coords.push_back(co);
    }
    expect_feats.insert(expect_feats.end(), rounded.begin(), rounded.end());
    offset += batch_count_of(coords);
  }
  const SparseTensor y = ops::sparse_collate(inputs);
  EXPECT_EQ(y.manager(), manager);
  EXPECT_EQ(y.stride(), (Int3{stride}));
  for (const auto& t : inputs) EXPECT_NE(y.key(), t.key());
  ASSERT_EQ(y.rows(), static_cast<std::int64_t>(expect_coords.size()));
  EXPECT_EQ(coords_from_array(y.coords(), y.rows()), expect_coords);
  EXPECT_EQ(to_doubles(y.feats()), expect_feats);  // copied exactly
  ASSERT_TRUE(y.batch_counts().has_value());
  std::vector<std::int32_t> bc(static_cast<std::size_t>(offset), 0);
  for (const Coord& co : expect_coords) ++bc[static_cast<std::size_t>(co[0])];
  EXPECT_EQ(y.batch_counts()->to_vector<std::int32_t>(), bc);

  // Decomposition gives every item back in row order.
  const auto rows = ops::batch_rows(y);
  const auto xyz = ops::decomposed_coordinates(y);
  const auto feats = ops::decomposed_features(y);
  ASSERT_EQ(rows.size(), static_cast<std::size_t>(batch_count_of(expect_coords)));
  ASSERT_EQ(xyz.size(), rows.size());
  ASSERT_EQ(feats.size(), rows.size());
  for (std::size_t b = 0; b < rows.size(); ++b) {
    std::vector<std::int32_t> want_rows;
    std::vector<std::int32_t> want_xyz;
    std::vector<double> want_feats;
    for (std::size_t r = 0; r < expect_coords.size(); ++r) {
      if (expect_coords[r][0] != static_cast<int>(b)) continue;
      want_rows.push_back(static_cast<std::int32_t>(r));
      want_xyz.insert(want_xyz.end(), {expect_coords[r][1], expect_coords[r][2], expect_coords[r][3]});
      for (int j = 0; j < c; ++j)
        want_feats.push_back(expect_feats[r * static_cast<std::size_t>(c) + static_cast<std::size_t>(j)]);
    }
    EXPECT_EQ(rows[b].to_vector<std::int32_t>(), want_rows) << "item " << b;
    EXPECT_EQ(xyz[b].shape(), (Shape{static_cast<std::int64_t>(want_rows.size()), 3}));
    EXPECT_EQ(xyz[b].to_vector<std::int32_t>(), want_xyz) << "item " << b;
    EXPECT_EQ(feats[b].shape(), (Shape{static_cast<std::int64_t>(want_rows.size()), c}));
    EXPECT_EQ(feats[b].dtype(), dtype);
    EXPECT_EQ(to_doubles(feats[b]), want_feats) << "item " << b;
  }
}

INSTANTIATE_TEST_SUITE_P(All, CollateRandom,
                         ::testing::Combine(::testing::Values(DType::f32, DType::f16, DType::f64),
                                            ::testing::Values(1, 2), ::testing::Values(1, 3, 5)),
                         [](const auto& info) {
                           return std::string(dtype_name(std::get<0>(info.param))) + "_stride" +
                                  std::to_string(std::get<1>(info.param)) + "_inputs" +
                                  std::to_string(std::get<2>(info.param));
                         });

TEST(SparseCollate, SingleItemInputsGetConsecutiveBatchIds) {
  auto m = CoordinateManager::create();
  const SparseTensor a = make_tensor({{0, -100000, 5, 7}}, {1.0}, 1, DType::f32, {1, 1, 1}, m);
  const SparseTensor b = make_tensor({{0, 1, 2, 3}, {0, 4, 5, 6}}, {2.0, 3.0}, 1, DType::f32, {1, 1, 1}, m);
  const SparseTensor y = ops::sparse_collate({a, b, a});
  EXPECT_EQ(coords_from_array(y.coords(), y.rows()),
            (std::vector<Coord>{{0, -100000, 5, 7}, {1, 1, 2, 3}, {1, 4, 5, 6}, {2, -100000, 5, 7}}));
  EXPECT_EQ(y.feats().to_vector<float>(), (std::vector<float>{1, 2, 3, 1}));
  EXPECT_EQ(y.batch_counts()->to_vector<std::int32_t>(), (std::vector<std::int32_t>{1, 2, 1}));
}

TEST(SparseCollate, BatchCountsLengthSetsTheOffset) {
  // An input whose batch_counts declares 3 items (the last two empty) takes 3 ids.
  auto m = CoordinateManager::create();
  const SparseTensor a = SparseTensor::from_coords(
      coords_array({{0, 0, 0, 0}}), Array::from_vector(std::vector<float>{1}, Shape{1, 1}),
      {.manager = m, .batch_counts = Array::from_vector(std::vector<std::int32_t>{1, 0, 0}, Shape{3})});
  const SparseTensor b = make_tensor({{0, 0, 0, 0}}, {2.0}, 1, DType::f32, {1, 1, 1}, m);
  const SparseTensor y = ops::sparse_collate({a, b});
  EXPECT_EQ(coords_from_array(y.coords(), y.rows()), (std::vector<Coord>{{0, 0, 0, 0}, {3, 0, 0, 0}}));
  EXPECT_EQ(y.batch_counts()->to_vector<std::int32_t>(), (std::vector<std::int32_t>{1, 0, 0, 1}));
  const auto items = ops::decomposed_features(y);
  ASSERT_EQ(items.size(), 4u);
  EXPECT_EQ(items[1].shape(), (Shape{0, 1}));
  EXPECT_EQ(items[3].to_vector<float>(), (std::vector<float>{2}));
}

TEST(SparseCollate, MeanMergesDuplicatesInFirstSeenOrder) {
  for (DType dtype : {DType::f32, DType::f16, DType::f64}) {
    Rng rng(static_cast<std::uint64_t>(dtype));
    auto m = CoordinateManager::create();
    // Inputs built without the uniqueness check hold repeated coordinates.
    std::vector<SparseTensor> inputs;
    std::vector<Coord> all;
    std::vector<double> all_feats;
    const int c = 3;
    int offset = 0;
    for (int i = 0; i < 3; ++i) {
      std::vector<Coord> coords;
      for (int r = 0; r < 200; ++r)
        coords.push_back({static_cast<int>(rng.integer(0, 1)), 2 * static_cast<int>(rng.integer(-3, 3)),
                          2 * static_cast<int>(rng.integer(-2, 2)), -4});
      const auto values = random_values(rng, coords.size() * c);
      inputs.push_back(make_tensor(coords, values, c, dtype, {2, 2, 2}, m, false));
      const auto rounded = to_doubles(inputs.back().feats());
      for (Coord co : coords) {
        co[0] += offset;
        all.push_back(co);
      }
      all_feats.insert(all_feats.end(), rounded.begin(), rounded.end());
      offset += batch_count_of(coords);
    }
    std::map<Coord, int> index;
    std::vector<Coord> uniq;
    std::vector<std::vector<double>> sums;
    std::vector<int> counts;
    for (std::size_t r = 0; r < all.size(); ++r) {
      auto [it, fresh] = index.try_emplace(all[r], static_cast<int>(uniq.size()));
      if (fresh) {
        uniq.push_back(all[r]);
        sums.emplace_back(c, 0.0);
        counts.push_back(0);
      }
      ++counts[static_cast<std::size_t>(it->second)];
      for (int j = 0; j < c; ++j)
        sums[static_cast<std::size_t>(it->second)][static_cast<std::size_t>(j)] +=
            all_feats[r * c + static_cast<std::size_t>(j)];
    }
    const SparseTensor y = ops::sparse_collate(inputs, {.duplicate_reduction = ops::DuplicateReduction::mean});
    ASSERT_EQ(coords_from_array(y.coords(), y.rows()), uniq);
    std::vector<double> expect, mag;
    for (std::size_t u = 0; u < uniq.size(); ++u)
      for (int j = 0; j < c; ++j) {
        expect.push_back(sums[u][static_cast<std::size_t>(j)] / counts[u]);
        mag.push_back(1.0);
      }
    const std::string report = compare_elements(to_doubles(y.feats()), expect, mag, tolerance_for(dtype), c);
    EXPECT_TRUE(report.empty()) << report;
    std::vector<std::int32_t> bc(static_cast<std::size_t>(offset), 0);
    for (const Coord& co : uniq) ++bc[static_cast<std::size_t>(co[0])];
    EXPECT_EQ(y.batch_counts()->to_vector<std::int32_t>(), bc);
  }
}

TEST(SparseCollate, NoneRejectsDuplicateRows) {
  auto m = CoordinateManager::create();
  const SparseTensor a = make_tensor({{0, 1, 1, 1}, {0, 1, 1, 1}}, {1.0, 2.0}, 1, DType::f32, {1, 1, 1}, m, false);
  expect_error<ValueError>([&] { ops::sparse_collate({a}); }, {"[sparse_collate]", "same coordinate"});
}

TEST(SparseCollate, EmptyInputsAndOneRow) {
  auto m = CoordinateManager::create();
  const SparseTensor e = SparseTensor::from_coords(Array::empty(Shape{0, 4}, DType::i32),
                                                   Array::empty(Shape{0, 2}, DType::f32), {.manager = m});
  const SparseTensor y = ops::sparse_collate({e, e});
  EXPECT_EQ(y.rows(), 0);
  EXPECT_EQ(y.channels(), 2);
  EXPECT_EQ(y.batch_counts()->to_vector<std::int32_t>(), (std::vector<std::int32_t>{0, 0}));
  EXPECT_TRUE(ops::batch_rows(y).empty());
  EXPECT_EQ(ops::batch_rows(y, 2).size(), 2u);
  const SparseTensor one = make_tensor({{4, 2, 2, 2}}, {5.0, 6.0}, 2, DType::f32, {1, 1, 1}, m);
  const auto r = ops::batch_rows(one);
  ASSERT_EQ(r.size(), 5u);
  EXPECT_EQ(r[4].to_vector<std::int32_t>(), (std::vector<std::int32_t>{0}));
  for (int b = 0; b < 4; ++b) EXPECT_EQ(r[static_cast<std::size_t>(b)].numel(), 0);
  const auto f = ops::decomposed_features(one, 7);
  ASSERT_EQ(f.size(), 7u);
  EXPECT_EQ(f[4].to_vector<float>(), (std::vector<float>{5, 6}));
  EXPECT_EQ(f[6].shape(), (Shape{0, 2}));
}

TEST(SparseCollate, Errors) {
  auto m = CoordinateManager::create();
  auto other = CoordinateManager::create();
  const SparseTensor a = make_tensor({{0, 0, 0, 0}}, {1.0}, 1, DType::f32, {1, 1, 1}, m);
  expect_error<ValueError>(m, [&] { ops::sparse_collate({}); }, {"[sparse_collate]", "'inputs'", "at least one"});
  expect_error<ValueError>(m, [&] { ops::sparse_collate({a, SparseTensor()}); }, {"[sparse_collate]", "'inputs'"});
  expect_error<ValueError>(
      m,
      [&] {
        ops::sparse_collate({a, make_tensor({{0, 0, 0, 0}}, {1.0}, 1, DType::f32, {1, 1, 1}, other)});
      },
      {"'inputs'", "entry 1", "mixed managers"});
  expect_error<ValueError>(m,
                           [&] {
                             ops::sparse_collate({a, make_tensor({{0, 0, 0, 0}}, {1.0}, 1, DType::f32, {2, 2, 2}, m)});
                           },
                           {"'inputs'", "entry 1", "stride"});
  expect_error<ValueError>(
      m,
      [&] {
        ops::sparse_collate({a, make_tensor({{0, 0, 0, 0}}, {1.0, 2.0}, 2, DType::f32, {1, 1, 1}, m)});
      },
      {"'inputs'", "entry 1", "2 channels"});
  expect_error<TypeError>(m,
                          [&] {
                            ops::sparse_collate({a, make_tensor({{0, 0, 0, 0}}, {1.0}, 1, DType::f16, {1, 1, 1}, m)});
                          },
                          {"'inputs'", "entry 1", "float16"});
  expect_error<ValueError>(
      m, [&] { ops::sparse_collate({a}, {.duplicate_reduction = static_cast<ops::DuplicateReduction>(4)}); },
      {"'duplicate_reduction'", "4"});
  // 1023 batch ids at most.
  const SparseTensor wide = make_tensor({{1000, 0, 0, 0}}, {1.0}, 1, DType::f32, {1, 1, 1}, m);
  expect_error<ValueError>(m, [&] { ops::sparse_collate({wide, a, a, a, a, wide}); }, {"'inputs'", "exceeds"});
}

TEST(BatchDecomposition, Errors) {
  auto m = CoordinateManager::create();
  const SparseTensor a = make_tensor({{0, 0, 0, 0}, {3, 1, 1, 1}}, {1.0, 2.0}, 1, DType::f32, {1, 1, 1}, m);
  expect_error<ValueError>([&] { ops::batch_rows(a, 3); }, {"[batch_rows]", "'batch_size'", "3"});
  expect_error<ValueError>([&] { ops::decomposed_coordinates(a, -1); },
                           {"[decomposed_coordinates]", "'batch_size'", "-1"});
  expect_error<ValueError>([&] { ops::decomposed_features(a, 2000); },
                           {"[decomposed_features]", "'batch_size'", "2000"});
  expect_error<ValueError>([&] { ops::decomposed_features(SparseTensor()); }, {"[decomposed_features]", "'x'"});
}

}  // namespace
}  // namespace lattice::testing

// Pooling against brute-force references (dense_reference's forward support
// and edges): sum / max / avg per element, the tie and NaN rules, global
// pooling by batch column, and the error paths.
#include <cmath>
#include <limits>
#include <map>

#include <gtest/gtest.h>

#include "lattice/ops/pooling.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

struct PoolCase {
  ops::PoolMode mode;
  DType dtype;
  I3 size, stride, padding, dilation;
  int batches;
};

std::string name(const PoolCase& c) {
  auto i3 = [](const I3& v) { return std::to_string(v[0]) + "x" + std::to_string(v[1]) + "x" + std::to_string(v[2]); };
  return std::string(ops::pool_mode_name(c.mode)) + "_" + std::string(dtype_name(c.dtype)) + "_k" + i3(c.size) + "_s" +
         i3(c.stride) + "_p" + i3(c.padding) + "_d" + i3(c.dilation) + "_b" + std::to_string(c.batches);
}

std::vector<PoolCase> cases() {
  std::vector<PoolCase> out;
  const std::vector<DType> dtypes{DType::f32, DType::f16, DType::f64, DType::bf16};
  int i = 0;
  for (auto mode : {ops::PoolMode::sum, ops::PoolMode::max, ops::PoolMode::avg}) {
    for (const auto& [size, stride] : std::vector<std::pair<I3, I3>>{
             {{2, 2, 2}, {2, 2, 2}}, {{3, 3, 3}, {2, 2, 2}}, {{3, 1, 3}, {2, 1, 2}}, {{1, 1, 1}, {2, 2, 2}}}) {
      out.push_back({mode, dtypes[static_cast<std::size_t>(i) % dtypes.size()], size, stride,
                     i % 3 == 1 ? I3{1, 0, 1} : I3{0, 0, 0}, i % 5 == 2 ? I3{2, 2, 2} : I3{1, 1, 1}, i % 2 ? 3 : 1});
      ++i;
    }
  }
  return out;
}

class PoolAgainstReference : public ::testing::TestWithParam<PoolCase> {};

TEST_P(PoolAgainstReference, PerElement) {
  const PoolCase c = GetParam();
  Rng rng(std::hash<std::string>{}(name(c)));
  const auto coords = random_coords(rng, c.batches, -6, 5, {1, 1, 1}, 0.3);
  const auto n = static_cast<std::int64_t>(coords.size());
  const int ch = 5;
  // Few distinct values so that max meets ties.
  std::vector<double> v(static_cast<std::size_t>(n * ch));
  for (double& e : v) e = static_cast<double>(rng.integer(-4, 4)) * 0.25;
  const Array feats = make_array(v, Shape{n, ch}, c.dtype);
  const auto fv = to_doubles(feats);
  const SparseTensor x =
      SparseTensor::from_coords(coords_array(coords), feats, {.manager = CoordinateManager::create()});
  const SparseTensor y = ops::pool3d(x, c.mode,
                                     {{c.size[0], c.size[1], c.size[2]},
                                      {c.stride[0], c.stride[1], c.stride[2]},
                                      {c.padding[0], c.padding[1], c.padding[2]},
                                      {c.dilation[0], c.dilation[1], c.dilation[2]}});
  const RefSpec spec{c.size, c.stride, c.padding, c.dilation};
  const auto support = ref_support(RefKind::forward, coords, {1, 1, 1}, spec, nullptr);
  ASSERT_EQ(coords_from_array(y.coords(), y.rows()), support);
  EXPECT_EQ(y.stride(), (Int3{c.stride[0], c.stride[1], c.stride[2]}));
  const auto edges = ref_edges(RefKind::forward, coords, {1, 1, 1}, support, c.stride, spec);
  std::vector<double> expect(support.size() * ch, 0.0), mag(support.size() * ch, 0.0);
  std::vector<int> count(support.size(), 0);
  std::vector<int> best_row(support.size() * ch, -1);
  for (const RefEdge& e : edges) {
    ++count[static_cast<std::size_t>(e.out_row)];
    for (int j = 0; j < ch; ++j) {
      const std::size_t o = static_cast<std::size_t>(e.out_row) * ch + static_cast<std::size_t>(j);
      const double value = fv[static_cast<std::size_t>(e.in_row) * ch + static_cast<std::size_t>(j)];
      mag[o] += std::abs(value);
      if (c.mode == ops::PoolMode::max) {
        if (best_row[o] < 0 || value > expect[o] || (value == expect[o] && e.in_row < best_row[o])) {
          expect[o] = value;
          best_row[o] = e.in_row;
        }
      } else {
        expect[o] += value;
      }
    }
  }
  for (std::size_t o = 0; o < support.size(); ++o)
    for (int j = 0; j < ch; ++j) {
      const std::size_t k = o * ch + static_cast<std::size_t>(j);
      if (c.mode == ops::PoolMode::avg && count[o] > 0) {
        expect[k] /= count[o];
        mag[k] /= count[o];
      }
      if (c.mode == ops::PoolMode::max) mag[k] = std::abs(expect[k]);
    }
  const std::string report = compare_elements(to_doubles(y.feats().rows(0, y.rows())), expect, mag,
                                              std::max(tolerance_for(c.dtype), 1e-7), ch);
  EXPECT_TRUE(report.empty()) << name(c) << "\n" << report;
}

INSTANTIATE_TEST_SUITE_P(Modes, PoolAgainstReference, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return std::to_string(info.index) + "_" + name(info.param); });

SparseTensor tiny(std::vector<std::int32_t> coords, std::vector<float> feats, int channels) {
  const auto n = static_cast<std::int64_t>(coords.size() / 4);
  return SparseTensor::from_coords(Array::from_vector(coords, Shape{n, 4}),
                                   Array::from_vector(feats, Shape{n, channels}),
                                   {.manager = CoordinateManager::create()});
}

TEST(Pooling, MaxTiesGoToTheLowestRowAndNaNPropagates) {
  // Rows 0 and 1 fall in the same 2x2x2 cell with equal values; row 2 holds NaN in another cell.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const SparseTensor x = tiny({0, 1, 1, 1, 0, 0, 0, 0, 0, 4, 4, 4, 0, 5, 4, 4}, {2, 2, nan, 7}, 1);
  const SparseTensor y = ops::max_pool3d(x);
  const auto v = y.feats().to_vector<float>();
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0], 2.0f);
  EXPECT_TRUE(std::isnan(v[1]));
  EXPECT_EQ(ops::avg_pool3d(x).feats().to_vector<float>()[0], 2.0f);
  EXPECT_EQ(ops::sum_pool3d(x).feats().to_vector<float>()[0], 4.0f);
}

TEST(Pooling, PaddingLeavesUnreachedOutputsAtZero) {
  // With padding 1 and kernel 2, the window of output u covers 2u-1 .. 2u: row (1,1,1)
  // falls in output (0,0,0) by support but no offset reaches it.
  const SparseTensor x = tiny({0, 1, 1, 1}, {5}, 1);
  const SparseTensor y = ops::sum_pool3d(x, {.padding = 1});
  EXPECT_EQ(y.rows(), 1);
  EXPECT_EQ(y.feats().to_vector<float>()[0], 0.0f);
}

TEST(GlobalPool, ReducesEachBatchItemByItsColumn) {
  // Batch items interleaved, item 1 empty.
  const SparseTensor x = tiny({2, 0, 0, 0, 0, 1, 0, 0, 2, 1, 0, 0, 0, 2, 0, 0}, {1, 10, 3, 30, -2, 5, 4, 40}, 2);
  const Array sum = ops::global_pool(x, ops::PoolMode::sum);
  EXPECT_EQ(sum.shape(), (Shape{3, 2}));
  EXPECT_EQ(sum.to_vector<float>(), (std::vector<float>{7, 70, 0, 0, -1, 15}));
  EXPECT_EQ(ops::global_pool(x, ops::PoolMode::avg).to_vector<float>(), (std::vector<float>{3.5, 35, 0, 0, -0.5, 7.5}));
  EXPECT_EQ(ops::global_pool(x, ops::PoolMode::sum, 5).dim(0), 5);
  EXPECT_THROW(ops::global_pool(x, ops::PoolMode::max), ValueError) << "item 1 is empty";
  const SparseTensor full = tiny({0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0}, {1, 2, 3}, 1);
  EXPECT_EQ(ops::global_pool(full, ops::PoolMode::max).to_vector<float>(), (std::vector<float>{3, 2}));
}

TEST(Pooling, Errors) {
  const SparseTensor x = tiny({0, 0, 0, 0, 1, 0, 0, 0}, {1, 2}, 1);
  expect_error<ValueError>([&] { ops::pool3d(x, static_cast<ops::PoolMode>(7)); }, {"[pool3d]", "'mode'"});
  expect_error<ValueError>([&] { ops::max_pool3d(x, {.kernel_size = 0}); }, {"[max_pool3d]", "'kernel_size'"});
  expect_error<ValueError>([&] { ops::avg_pool3d(x, {.stride = -1}); }, {"[avg_pool3d]", "'stride'"});
  expect_error<ValueError>([&] { ops::global_pool(x, ops::PoolMode::sum, 1); }, {"[global_pool]", "'batch_size'"});
  expect_error<ValueError>([&] { ops::global_pool(x, ops::PoolMode::sum, 0); }, {"'batch_size'"});
  expect_error<ValueError>([&] { ops::global_pool(x, ops::PoolMode::max, 3); }, {"[global_pool]", "batch item 2"});
  const SparseTensor empty =
      SparseTensor::from_coords(Array::empty(Shape{0, 4}, DType::i32), Array::empty(Shape{0, 2}, DType::f32));
  expect_error<ValueError>([&] { ops::global_pool(empty, ops::PoolMode::sum); }, {"no rows"});
  EXPECT_EQ(ops::global_pool(empty, ops::PoolMode::avg, 2).to_vector<float>(), (std::vector<float>{0, 0, 0, 0}));
  EXPECT_EQ(ops::max_pool3d(empty).rows(), 0);
}

}  // namespace
}  // namespace lattice::testing

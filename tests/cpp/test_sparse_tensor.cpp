// SparseTensor invariants checked at construction, and every constructor error.
#include <gtest/gtest.h>

#include "lattice/core/sparse_tensor.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

Array coords_of(std::vector<std::int32_t> flat) {
  const auto n = static_cast<std::int64_t>(flat.size() / 4);
  return Array::from_vector(flat, Shape{n, 4});
}

TEST(SparseTensor, FieldsAndBatchCounts) {
  auto m = CoordinateManager::create();
  const Array coords = coords_of({0, 0, 0, 0, 2, 2, -4, 6, 0, 2, 2, 2, 2, 0, 0, 0});
  const Array feats = Array::full(Shape{4, 3}, DType::f16, 1.0);
  const SparseTensor x = SparseTensor::from_coords(coords, feats, {.stride = Int3{2}, .manager = m});
  EXPECT_EQ(x.capacity(), 4);
  EXPECT_EQ(x.rows(), 4);
  EXPECT_EQ(x.channels(), 3);
  EXPECT_EQ(x.stride(), Int3{2});
  EXPECT_EQ(x.dtype(), DType::f16);
  EXPECT_EQ(x.active_rows().item_int(), 4);
  ASSERT_TRUE(x.batch_counts().has_value());
  EXPECT_EQ(x.batch_counts()->to_vector<std::int32_t>(), (std::vector<std::int32_t>{2, 0, 2}));
  EXPECT_TRUE(x.coords().shares_buffer_with(coords)) << "no copy of user coordinates";
  EXPECT_TRUE(x.feats().shares_buffer_with(feats));
}

TEST(SparseTensor, ActiveRowsBelowCapacity) {
  // Rows past active_rows are capacity: never validated, never read.
  const Array coords = coords_of({0, 1, 1, 1, 0, 2, 2, 2, 0, 1, 1, 1});  // the duplicate is past the active rows
  const SparseTensor x = SparseTensor::from_coords(coords, Array::zeros(Shape{3, 1}, DType::f32), {.active_rows = 2});
  EXPECT_EQ(x.rows(), 2);
  EXPECT_EQ(x.capacity(), 3);
  EXPECT_THROW(SparseTensor::from_coords(coords, Array::zeros(Shape{3, 1}, DType::f32)), ValueError);
}

TEST(SparseTensor, ConstructorErrors) {
  const Array good = coords_of({0, 0, 0, 0});
  const Array feats = Array::zeros(Shape{1, 2}, DType::f32);
  expect_error<TypeError>([&] { SparseTensor::from_coords(good.astype(DType::f32), feats); },
                          {"[SparseTensor]", "'coords'", "int32", "float32"});
  expect_error<TypeError>(
      [&] {
        SparseTensor::from_coords(good, Array::zeros(Shape{1, 2}, DType::i32));
      },
      {"'feats'", "floating", "int32"});
  expect_error<ValueError>(
      [&] {
        SparseTensor::from_coords(Array::zeros(Shape{1, 3}, DType::i32), feats);
      },
      {"'coords'", "(N, 4)", "(1, 3)"});
  expect_error<ValueError>(
      [&] {
        SparseTensor::from_coords(good, Array::zeros(Shape{2, 2}, DType::f32));
      },
      {"'feats'", "2 rows"});
  expect_error<ValueError>([&] { SparseTensor::from_coords(good, Array::zeros(Shape{2}, DType::f32)); },
                           {"'feats'", "(N, C)"});
  expect_error<ValueError>(
      [&] {
        SparseTensor::from_coords(coords_of({0, 1, 2, 2}), feats, {.stride = Int3{2}});
      },
      {"'coords'", "not divisible", "stride"});
  expect_error<ValueError>(
      [&] {
        SparseTensor::from_coords(good, feats, {.stride = Int3{0, 1, 1}});
      },
      {"'stride'", "positive"});
  expect_error<ValueError>(
      [&] {
        SparseTensor::from_coords(coords_of({-1, 0, 0, 0}), feats);
      },
      {"'coords'", "batch index -1"});
  expect_error<ValueError>([&] { SparseTensor::from_coords(coords_of({1023, 0, 0, 0}), feats); }, {"batch index 1023"});
  expect_error<ValueError>(
      [&] {
        SparseTensor::from_coords(coords_of({0, 131072, 0, 0}), feats);
      },
      {"'coords'", "overflows the hash key range"});
  expect_error<ValueError>([&] { SparseTensor::from_coords(coords_of({0, 0, -131073, 0}), feats); }, {"overflows"});
  expect_error<ValueError>(
      [&] {
        SparseTensor::from_coords(coords_of({0, 5, 5, 5, 0, 5, 5, 5}), Array::zeros(Shape{2, 1}, DType::f32));
      },
      {"rows 0 and 1", "same coordinate", "unique"});
  expect_error<ValueError>([&] { SparseTensor::from_coords(good, feats, {.active_rows = 2}); }, {"'active_rows'"});
  expect_error<ValueError>(
      [&] {
        SparseTensor::from_coords(good, feats,
                                  {.batch_counts = Array::from_vector(std::vector<std::int32_t>{3}, Shape{1})});
      },
      {"'batch_counts'", "entry 0 is 3"});
}

TEST(SparseTensor, LargeCoordinatesAtCoarseStridesFit) {
  // Keys hold logical coordinates: physical 2^20 at stride 16 is logical 65536.
  const SparseTensor x = SparseTensor::from_coords(coords_of({0, 1 << 20, -(1 << 20), 16}),
                                                   Array::zeros(Shape{1, 1}, DType::f32), {.stride = Int3{16}});
  EXPECT_EQ(x.rows(), 1);
  // Without check_unique, duplicates are the caller's promise (internal constructors).
  const SparseTensor dup = SparseTensor::from_coords(coords_of({0, 1, 1, 1, 0, 1, 1, 1}),
                                                     Array::zeros(Shape{2, 1}, DType::f32), {.check_unique = false});
  EXPECT_EQ(dup.rows(), 2);
}

TEST(SparseTensor, ReplaceFeatsChecksRows) {
  const SparseTensor x = SparseTensor::from_coords(coords_of({0, 0, 0, 0}), Array::zeros(Shape{1, 2}, DType::f32));
  EXPECT_THROW(x.replace_feats(Array::zeros(Shape{2, 2}, DType::f32)), ValueError);
  EXPECT_EQ(x.replace_feats(Array::zeros(Shape{1, 7}, DType::f64)).channels(), 7);
}

}  // namespace
}  // namespace lattice::testing

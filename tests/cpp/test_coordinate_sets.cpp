// Coordinate-set ops (SPEC §7, Appendix A "Morton codes") against naive
// std::map / std::set references: first-seen order, strides, negative and large
// coordinates, batches, empty inputs, capacity rows and every error path.
#include <algorithm>
#include <map>
#include <numeric>
#include <set>

#include <gtest/gtest.h>

#include "lattice/ops/algebra.hpp"
#include "lattice/ops/coordinate_sets.hpp"
#include "support/expect_error.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

SparseTensor make_tensor(const std::vector<Coord>& coords, std::int64_t ch, const std::shared_ptr<CoordinateManager>& m,
                         Int3 stride = Int3{1}, DType dtype = DType::f32) {
  const auto n = static_cast<std::int64_t>(coords.size());
  std::vector<double> v(static_cast<std::size_t>(n * ch));
  std::iota(v.begin(), v.end(), 0.0);
  return SparseTensor::from_coords(coords_array(coords), make_array(v, Shape{n, ch}, dtype),
                                   {.stride = stride, .manager = m});
}

int floor_to(int v, int s) {
  const int q = v >= 0 ? v / s : -((-v + s - 1) / s);
  return q * s;
}

// Reference Morton code: walk the 54 interleaved bits one by one.
std::uint64_t ref_morton(const Coord& c, Int3 stride) {
  std::uint64_t code = static_cast<std::uint64_t>(c[0]) << 54;
  for (int bit = 0; bit < 54; ++bit) {
    const int axis = bit % 3, level = bit / 3;
    const std::int64_t u = c[static_cast<std::size_t>(axis) + 1] / stride[axis] + 131072;
    if ((u >> level) & 1) code |= std::uint64_t{1} << bit;
  }
  return code;
}

std::vector<std::uint64_t> as_unsigned(const Array& codes) {
  const auto v = codes.to_vector<std::int64_t>();
  std::vector<std::uint64_t> out(v.size());
  std::transform(v.begin(), v.end(), out.begin(), [](std::int64_t x) { return static_cast<std::uint64_t>(x); });
  return out;
}

TEST(DownsampleCoords, FirstSeenUniqueAgainstReference) {
  int seed = 0;
  for (Int3 in_stride : {Int3{1}, Int3{2, 1, 3}}) {
    for (Int3 r : {Int3{2}, Int3{1, 3, 2}, Int3{1}, Int3{4}}) {
      for (int batches : {1, 3}) {
        Rng rng(static_cast<std::uint64_t>(++seed));
        auto m = CoordinateManager::create();
        const auto coords = random_coords(rng, batches, -6, 6, {in_stride.x, in_stride.y, in_stride.z}, 0.1);
        const SparseTensor x = make_tensor(coords, 2, m, in_stride);
        const SparseTensor y = ops::downsample_coords(x, r);
        const Int3 s = in_stride * r;
        std::vector<Coord> expect;
        std::set<Coord> seen;
        for (const Coord& c : coords) {
          const Coord d{c[0], floor_to(c[1], s.x), floor_to(c[2], s.y), floor_to(c[3], s.z)};
          if (seen.insert(d).second) expect.push_back(d);
        }
        EXPECT_EQ(y.stride(), s);
        EXPECT_EQ(y.channels(), 0);
        EXPECT_EQ(y.manager(), m);
        EXPECT_NE(y.key(), x.key());
        EXPECT_EQ(coords_from_array(y.coords(), y.rows()), expect);
        std::vector<std::int32_t> counts;
        for (const Coord& c : expect) {
          if (static_cast<std::size_t>(c[0]) >= counts.size()) counts.resize(static_cast<std::size_t>(c[0]) + 1, 0);
          ++counts[static_cast<std::size_t>(c[0])];
        }
        ASSERT_TRUE(y.batch_counts().has_value());
        EXPECT_EQ(y.batch_counts()->to_vector<std::int32_t>(), counts);
      }
    }
  }
}

TEST(DownsampleCoords, EdgeCases) {
  auto m = CoordinateManager::create();
  EXPECT_EQ(ops::downsample_coords(make_tensor({}, 1, m), Int3{2}).rows(), 0);
  const SparseTensor one = make_tensor({{1022, -131072, 131071, -1}}, 1, m);
  const SparseTensor y = ops::downsample_coords(one, Int3{2});
  EXPECT_EQ(coords_from_array(y.coords(), 1), (std::vector<Coord>{{1022, -131072, 131070, -2}}));
}

std::vector<Coord> ref_union(const std::vector<Coord>& a, const std::vector<Coord>& b) {
  std::set<Coord> in_a(a.begin(), a.end());
  std::vector<Coord> out = a;
  for (const Coord& c : b)
    if (!in_a.contains(c)) out.push_back(c);
  return out;
}

std::vector<Coord> ref_intersection(const std::vector<Coord>& a, const std::vector<Coord>& b) {
  std::set<Coord> in_b(b.begin(), b.end());
  std::vector<Coord> out;
  for (const Coord& c : a)
    if (in_b.contains(c)) out.push_back(c);
  return out;
}

TEST(UnionIntersection, AgainstReference) {
  int seed = 50;
  for (double density : {0.05, 0.3, 0.8}) {
    for (int batches : {1, 2, 4}) {
      Rng rng(static_cast<std::uint64_t>(++seed));
      auto m = CoordinateManager::create();
      const auto ac = random_coords(rng, batches, -4, 3, {2, 2, 2}, density);
      const auto bc = random_coords(rng, batches, -4, 3, {2, 2, 2}, density);
      const SparseTensor a = make_tensor(ac, 1, m, Int3{2}, DType::f16);
      const SparseTensor b = make_tensor(bc, 3, m, Int3{2}, DType::f16);
      const SparseTensor u = ops::union_coords(a, b);
      const SparseTensor i = ops::intersection_coords(a, b);
      EXPECT_EQ(coords_from_array(u.coords(), u.rows()), ref_union(ac, bc));
      EXPECT_EQ(coords_from_array(i.coords(), i.rows()), ref_intersection(ac, bc));
      EXPECT_EQ(u.stride(), Int3{2});
      EXPECT_EQ(u.channels(), 0);
      EXPECT_EQ(u.dtype(), DType::f16);
      EXPECT_NE(u.key(), a.key());
      EXPECT_NE(i.key(), a.key());
    }
  }
}

TEST(UnionIntersection, EmptyDisjointIdentical) {
  auto m = CoordinateManager::create();
  const std::vector<Coord> ac{{0, 1, 1, 1}, {1, -3, 0, 2}};
  const std::vector<Coord> bc{{2, 1, 1, 1}, {0, -3, 0, 2}};
  const SparseTensor a = make_tensor(ac, 1, m), b = make_tensor(bc, 1, m), e = make_tensor({}, 1, m);
  EXPECT_EQ(coords_from_array(ops::union_coords(a, b).coords(), 4), ref_union(ac, bc));
  EXPECT_EQ(ops::intersection_coords(a, b).rows(), 0);
  EXPECT_EQ(coords_from_array(ops::union_coords(e, a).coords(), 2), ac);
  EXPECT_EQ(coords_from_array(ops::union_coords(a, e).coords(), 2), ac);
  EXPECT_EQ(ops::intersection_coords(e, a).rows(), 0);
  EXPECT_EQ(ops::union_coords(e, make_tensor({}, 1, m)).rows(), 0);
  const SparseTensor a2 = make_tensor(ac, 1, m);
  EXPECT_EQ(coords_from_array(ops::union_coords(a, a2).coords(), ops::union_coords(a, a2).rows()), ac);
  EXPECT_EQ(coords_from_array(ops::intersection_coords(a2, a).coords(), 2), ac);
  // Same key: the set itself.
  EXPECT_EQ(ops::union_coords(a, a).key(), a.key());
}

TEST(LookupContains, MixedQueries) {
  auto m = CoordinateManager::create();
  const std::vector<Coord> xc{{0, 2, 4, -6}, {3, 0, 0, 0}, {1022, -262144, 262142, 2}};
  const SparseTensor x = make_tensor(xc, 2, m, Int3{2});
  const std::vector<Coord> q{{3, 0, 0, 0},    {0, 2, 4, -6}, {0, 2, 4, -5},      {1, 2, 4, -6},
                             {1023, 0, 0, 0}, {-1, 0, 0, 0}, {0, 1 << 30, 0, 0}, {1022, -262144, 262142, 2},
                             {0, 2, 4, -6}};
  const Array rows = ops::lookup_coords(x, coords_array(q));
  EXPECT_EQ(rows.dtype(), DType::i32);
  EXPECT_EQ(rows.to_vector<std::int32_t>(), (std::vector<std::int32_t>{1, 0, -1, -1, -1, -1, -1, 2, 0}));
  const Array mask = ops::contains_coords(x, coords_array(q));
  EXPECT_EQ(mask.dtype(), DType::u8);
  EXPECT_EQ(mask.to_vector<std::uint8_t>(), (std::vector<std::uint8_t>{1, 1, 0, 0, 0, 0, 0, 1, 1}));
  EXPECT_EQ(ops::lookup_coords(x, coords_array({})).dim(0), 0);
  EXPECT_EQ(ops::lookup_coords(make_tensor({}, 1, m), coords_array(q)).to_vector<std::int32_t>(),
            std::vector<std::int32_t>(q.size(), -1));
}

TEST(LookupContains, RandomAgainstMap) {
  Rng rng(77);
  auto m = CoordinateManager::create();
  const auto xc = random_coords(rng, 3, -5, 5, {1, 1, 1}, 0.2);
  const SparseTensor x = make_tensor(xc, 1, m);
  std::map<Coord, int> xm;
  for (std::size_t i = 0; i < xc.size(); ++i) xm[xc[i]] = static_cast<int>(i);
  const auto qc = random_coords(rng, 4, -6, 6, {1, 1, 1}, 0.2);
  const auto rows = ops::lookup_coords(x, coords_array(qc)).to_vector<std::int32_t>();
  const auto mask = ops::contains_coords(x, coords_array(qc)).to_vector<std::uint8_t>();
  for (std::size_t i = 0; i < qc.size(); ++i) {
    const auto it = xm.find(qc[i]);
    EXPECT_EQ(rows[i], it == xm.end() ? -1 : it->second);
    EXPECT_EQ(mask[i], it == xm.end() ? 0 : 1);
  }
}

TEST(InverseMap, AgainstReference) {
  int seed = 200;
  for (Int3 fs : {Int3{1}, Int3{2, 1, 1}}) {
    for (Int3 r : {Int3{2}, Int3{3, 1, 2}}) {
      Rng rng(static_cast<std::uint64_t>(++seed));
      auto m = CoordinateManager::create();
      const auto fc = random_coords(rng, 2, -6, 6, {fs.x, fs.y, fs.z}, 0.1);
      const SparseTensor fine = make_tensor(fc, 1, m, fs);
      const SparseTensor full = ops::downsample_coords(fine, r);
      // A coarse set missing some parents: every other row of the full one.
      const auto cc_all = coords_from_array(full.coords(), full.rows());
      std::vector<Coord> cc;
      for (std::size_t i = 0; i < cc_all.size(); i += 2) cc.push_back(cc_all[i]);
      std::reverse(cc.begin(), cc.end());
      const SparseTensor coarse = make_tensor(cc, 1, m, fs * r);
      std::map<Coord, int> cm;
      for (std::size_t i = 0; i < cc.size(); ++i) cm[cc[i]] = static_cast<int>(i);
      const Int3 s = fs * r;
      const auto got = ops::inverse_map(fine, coarse).to_vector<std::int32_t>();
      ASSERT_EQ(got.size(), fc.size());
      for (std::size_t i = 0; i < fc.size(); ++i) {
        const Coord p{fc[i][0], floor_to(fc[i][1], s.x), floor_to(fc[i][2], s.y), floor_to(fc[i][3], s.z)};
        const auto it = cm.find(p);
        EXPECT_EQ(got[i], it == cm.end() ? -1 : it->second) << "fine row " << i;
      }
      // Against the full downsampled set every fine row has a parent.
      for (std::int32_t v : ops::inverse_map(fine, full).to_vector<std::int32_t>()) EXPECT_GE(v, 0);
    }
  }
}

TEST(InverseMap, CapacityRowsAndEmpty) {
  auto m = CoordinateManager::create();
  const SparseTensor fine =
      SparseTensor::from_coords(coords_array({{0, 1, 1, 1}, {0, -1, 0, 0}, {0, 0, 0, 0}}),
                                make_array({1, 2, 3}, Shape{3, 1}, DType::f32), {.manager = m, .active_rows = 2});
  const SparseTensor coarse = make_tensor({{0, 0, 0, 0}, {0, -2, 0, 0}}, 1, m, Int3{2});
  EXPECT_EQ(ops::inverse_map(fine, coarse).to_vector<std::int32_t>(), (std::vector<std::int32_t>{0, 1, -1}));
  EXPECT_EQ(ops::inverse_map(make_tensor({}, 1, m), coarse).dim(0), 0);
}

TEST(MortonCodes, AgainstBitwiseReference) {
  Rng rng(31);
  std::vector<Coord> c{{0, 0, 0, 0},      {1023, 0, 0, 0}, {0, -131072, -131072, -131072}, {0, 131071, 131071, 131071},
                       {1022, -1, 1, -1}, {5, 7, -9, 11}};
  for (int i = 0; i < 200; ++i) {
    c.push_back({static_cast<int>(rng.integer(0, 1023)), static_cast<int>(rng.integer(-131072, 131071)),
                 static_cast<int>(rng.integer(-131072, 131071)), static_cast<int>(rng.integer(-131072, 131071))});
  }
  const auto got = as_unsigned(ops::morton_codes(coords_array(c), Int3{1}));
  for (std::size_t i = 0; i < c.size(); ++i) EXPECT_EQ(got[i], ref_morton(c[i], Int3{1})) << "row " << i;
  EXPECT_EQ(got[1] >> 54, 1023u);  // batch in the top 10 bits
  EXPECT_EQ(got[1] - got[0], std::uint64_t{1023} << 54);
  EXPECT_EQ(got[2], 0u);  // the most negative coordinate is the smallest code
  // Logical coordinates: stride 2 halves before interleaving.
  const std::vector<Coord> s2{{3, -4, 6, 262142}, {0, -262144, 0, 2}};
  const auto got2 = as_unsigned(ops::morton_codes(coords_array(s2), Int3{2}));
  for (std::size_t i = 0; i < s2.size(); ++i) EXPECT_EQ(got2[i], ref_morton(s2[i], Int3{2}));
  EXPECT_EQ(ops::morton_codes(coords_array({}), Int3{1}).dim(0), 0);
}

TEST(MortonCodes, OfTensorWithCapacityRows) {
  auto m = CoordinateManager::create();
  const SparseTensor x = SparseTensor::from_coords(coords_array({{1, 2, -2, 4}, {0, 0, 0, 0}, {0, 2, 2, 2}}),
                                                   make_array({1, 2, 3}, Shape{3, 1}, DType::f32),
                                                   {.stride = Int3{2}, .manager = m, .active_rows = 2});
  const auto got = as_unsigned(ops::morton_codes(x));
  EXPECT_EQ(got, (std::vector<std::uint64_t>{ref_morton({1, 2, -2, 4}, Int3{2}), ref_morton({0, 0, 0, 0}, Int3{2}),
                                             ~std::uint64_t{0}}));
  EXPECT_EQ(ops::morton_order(x).to_vector<std::int32_t>(), (std::vector<std::int32_t>{1, 0, 2}));
}

TEST(MortonOrder, StableBatchPrimaryAndSort) {
  int seed = 300;
  for (DType dtype : {DType::f32, DType::f16, DType::f64}) {
    Rng rng(static_cast<std::uint64_t>(++seed));
    auto m = CoordinateManager::create();
    auto coords = random_coords(rng, 4, -5, 5, {2, 2, 2}, 0.1);
    for (Coord& c : coords) c[0] = c[0] == 3 ? 1022 : c[0];  // a large batch id
    const SparseTensor x = make_tensor(coords, 3, m, Int3{2}, dtype);
    std::vector<std::int32_t> expect(coords.size());
    std::iota(expect.begin(), expect.end(), 0);
    std::stable_sort(expect.begin(), expect.end(), [&](std::int32_t a, std::int32_t b) {
      return ref_morton(coords[static_cast<std::size_t>(a)], Int3{2}) <
             ref_morton(coords[static_cast<std::size_t>(b)], Int3{2});
    });
    EXPECT_EQ(ops::morton_order(x).to_vector<std::int32_t>(), expect);
    const SparseTensor y = ops::morton_sort_coords(x);
    EXPECT_NE(y.key(), x.key());
    EXPECT_EQ(y.stride(), Int3{2});
    EXPECT_EQ(y.rows(), x.rows());
    EXPECT_EQ(y.dtype(), dtype);
    const auto yc = coords_from_array(y.coords(), y.rows());
    const auto xv = to_doubles(x.feats()), yv = to_doubles(y.feats());
    int last_batch = -1;
    for (std::size_t i = 0; i < expect.size(); ++i) {
      EXPECT_EQ(yc[i], coords[static_cast<std::size_t>(expect[i])]);
      EXPECT_GE(yc[i][0], last_batch);  // batch is the primary key
      last_batch = yc[i][0];
      for (std::size_t k = 0; k < 3; ++k) EXPECT_EQ(yv[i * 3 + k], xv[static_cast<std::size_t>(expect[i]) * 3 + k]);
    }
    ASSERT_TRUE(y.batch_counts().has_value());
    EXPECT_EQ(y.batch_counts()->to_vector<std::int32_t>(), x.batch_counts()->to_vector<std::int32_t>());
  }
  auto m = CoordinateManager::create();
  EXPECT_EQ(ops::morton_sort_coords(make_tensor({}, 2, m)).rows(), 0);
  EXPECT_EQ(ops::morton_order(make_tensor({{0, 1, 2, 3}}, 2, m)).to_vector<std::int32_t>(),
            (std::vector<std::int32_t>{0}));
}

TEST(CoordinateSets, InputsNotMutated) {
  Rng rng(17);
  auto m = CoordinateManager::create();
  const SparseTensor a = make_tensor(random_coords(rng, 2, -4, 4, {1, 1, 1}, 0.3), 2, m);
  const SparseTensor b = make_tensor(random_coords(rng, 2, -4, 4, {1, 1, 1}, 0.3), 2, m);
  const Array q = b.coords().clone();
  const auto before = {bytes_of(a.coords()), bytes_of(a.feats()), bytes_of(b.coords()), bytes_of(q)};
  (void)ops::downsample_coords(a, Int3{2});
  (void)ops::union_coords(a, b);
  (void)ops::intersection_coords(a, b);
  (void)ops::lookup_coords(a, q);
  (void)ops::inverse_map(a, ops::downsample_coords(b, Int3{2}));
  (void)ops::morton_sort_coords(a);
  (void)ops::morton_codes(q, Int3{1});
  const auto after = {bytes_of(a.coords()), bytes_of(a.feats()), bytes_of(b.coords()), bytes_of(q)};
  EXPECT_TRUE(std::equal(before.begin(), before.end(), after.begin()));
}

TEST(CoordinateSetErrors, EveryPath) {
  auto m = CoordinateManager::create();
  auto other = CoordinateManager::create();
  const SparseTensor a = make_tensor({{0, 0, 0, 0}, {0, 2, 2, 2}}, 1, m, Int3{2});
  const SparseTensor s1 = make_tensor({{0, 0, 0, 0}}, 1, m, Int3{1});
  const SparseTensor om = make_tensor({{0, 0, 0, 0}}, 1, other, Int3{2});
  const SparseTensor s3 = make_tensor({{0, 0, 0, 0}}, 1, m, Int3{3});
  expect_error<ValueError>(m, [&] { ops::union_coords(a, s1); }, {"[union_coords]", "'b'", "stride"});
  expect_error<ValueError>(m, [&] { ops::union_coords(a, om); }, {"[union_coords]", "'b'", "manager"});
  expect_error<ValueError>(m, [&] { ops::intersection_coords(a, s1); }, {"[intersection_coords]", "'b'", "stride"});
  expect_error<ValueError>(m, [&] { ops::intersection_coords(om, a); }, {"[intersection_coords]", "'b'", "manager"});
  expect_error<ValueError>(m,
                           [&] {
                             ops::downsample_coords(a, Int3{2, 0, 2});
                           },
                           {"[downsample_coords]", "'stride'", "positive"});
  expect_error<ValueError>(m, [&] { ops::downsample_coords(a, Int3{1 << 24}); },
                           {"[downsample_coords]", "'stride'", "too large"});
  expect_error<ValueError>(m, [&] { ops::downsample_coords(SparseTensor(), Int3{2}); },
                           {"[downsample_coords]", "'x'", "undefined"});
  expect_error<ValueError>(m, [&] { ops::inverse_map(a, s3); }, {"[inverse_map]", "'coarse'", "not a multiple"});
  expect_error<ValueError>(m, [&] { ops::inverse_map(a, om); }, {"[inverse_map]", "'coarse'", "manager"});
  expect_error<TypeError>(m,
                          [&] {
                            ops::lookup_coords(a, Array::zeros(Shape{2, 4}, DType::i64));
                          },
                          {"[lookup_coords]", "'coords'", "int32"});
  expect_error<ValueError>(m,
                           [&] {
                             ops::contains_coords(a, Array::zeros(Shape{2, 3}, DType::i32));
                           },
                           {"[contains_coords]", "'coords'", "(M, 4)"});
  const auto mc = [](std::vector<Coord> c, Int3 s) { return ops::morton_codes(coords_array(c), s); };
  expect_error<ValueError>([&] { mc({{1024, 0, 0, 0}}, Int3{1}); }, {"[morton_codes]", "'coords'", "batch index 1024"});
  expect_error<ValueError>([&] { mc({{-1, 0, 0, 0}}, Int3{1}); }, {"[morton_codes]", "'coords'", "batch index -1"});
  expect_error<ValueError>([&] { mc({{0, 0, 131072, 0}}, Int3{1}); }, {"[morton_codes]", "axis y", "131072"});
  expect_error<ValueError>([&] { mc({{0, 0, 0, -131073}}, Int3{1}); }, {"[morton_codes]", "axis z", "-131073"});
  expect_error<ValueError>([&] { mc({{0, 262144, 0, 0}}, Int3{2}); }, {"[morton_codes]", "axis x", "logical 131072"});
  expect_error<ValueError>([&] { mc({{0, 3, 0, 0}}, Int3{2}); }, {"[morton_codes]", "not divisible"});
  expect_error<ValueError>([&] { mc({{0, 0, 0, 0}}, Int3{0}); }, {"[morton_codes]", "'stride'", "positive"});
  expect_error<TypeError>(
      [&] {
        ops::morton_codes(Array::zeros(Shape{1, 4}, DType::f32), Int3{1});
      },
      {"[morton_codes]", "'coords'", "int32"});
  expect_error<ValueError>([&] { ops::morton_codes(Array(), Int3{1}); }, {"[morton_codes]", "'coords'", "undefined"});
  expect_error<ValueError>(m, [&] { ops::morton_order(SparseTensor()); }, {"[morton_order]", "'x'", "undefined"});
  expect_error<ValueError>(m, [&] { ops::morton_sort_coords(SparseTensor()); },
                           {"[morton_sort_coords]", "'x'", "undefined"});
}

}  // namespace
}  // namespace lattice::testing

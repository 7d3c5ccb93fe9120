// Resampling (SPEC §6, Appendix A "Pooling"): pool_transpose3d against the
// brute-force transposed relation of support/dense_reference, and
// trilinear_upsample3d against a brute-force evaluation of the Appendix A
// formula over every (fine, coarse) pair; default children support and
// explicit targets; stride bookkeeping and every error path.
#include <cmath>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "lattice/ops/resample.hpp"
#include "support/dense_reference.hpp"
#include "support/expect_error.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

constexpr DType k_dtypes[] = {DType::f32, DType::f16, DType::f64, DType::bf16};

Int3 int3(const I3& v) { return Int3{v[0], v[1], v[2]}; }

struct Input {
  std::vector<Coord> coords;
  std::vector<double> feats;  // as stored (rounded to the dtype)
  SparseTensor x;
};

Input make_input(Rng& rng, const std::shared_ptr<CoordinateManager>& m, int batches, int lo, int hi, const I3& stride,
                 double density, int channels, DType dtype) {
  Input in;
  in.coords = random_coords(rng, batches, lo, hi, stride, density);
  const auto n = static_cast<std::int64_t>(in.coords.size());
  const Array f = make_array(random_values(rng, static_cast<std::size_t>(n * channels)), Shape{n, channels}, dtype);
  in.feats = to_doubles(f);
  in.x = SparseTensor::from_coords(coords_array(in.coords), f, {.stride = int3(stride), .manager = m});
  return in;
}

void expect_values(const SparseTensor& y, const std::vector<double>& expect, const std::vector<double>& mag,
                   DType dtype) {
  const auto got = to_doubles(y.feats().rows(0, y.rows()));
  const std::string report = compare_elements(got, expect, mag, tolerance_for(dtype),
                                              static_cast<std::size_t>(std::max<std::int64_t>(1, y.channels())));
  EXPECT_TRUE(report.empty()) << report;
}

// ---- pool_transpose3d -----------------------------------------------------------

struct PtCase {
  I3 size, stride, in_stride;
  bool target;
  DType dtype;
};

TEST(PoolTranspose3d, AveragesOverTheTransposedRelation) {
  const std::vector<PtCase> cases{
      {{2, 2, 2}, {2, 2, 2}, {2, 2, 2}, false, DType::f32}, {{3, 3, 3}, {2, 2, 2}, {4, 4, 4}, false, DType::f16},
      {{2, 1, 2}, {2, 1, 2}, {2, 2, 2}, false, DType::f64}, {{3, 3, 3}, {2, 2, 2}, {2, 2, 2}, true, DType::f32},
      {{2, 2, 2}, {2, 2, 2}, {2, 2, 2}, true, DType::bf16}, {{3, 2, 1}, {1, 2, 1}, {2, 2, 2}, false, DType::f32},
  };
  int id = 0;
  for (const PtCase& c : cases) {
    for (int batches : {1, 3}) {
      SCOPED_TRACE("case " + std::to_string(id) + " batches " + std::to_string(batches));
      Rng rng(static_cast<std::uint64_t>(500 + ++id));
      const auto m = CoordinateManager::create();
      const int ch = 1 + id % 4;
      const Input in = make_input(rng, m, batches, -3, 3, c.in_stride, 0.3, ch, c.dtype);
      const RefSpec spec{c.size, c.stride, {0, 0, 0}, {1, 1, 1}};
      const I3 out_stride{c.in_stride[0] / c.stride[0], c.in_stride[1] / c.stride[1], c.in_stride[2] / c.stride[2]};
      ops::PoolTranspose3dParams params{int3(c.size), int3(c.stride)};
      std::vector<Coord> support;
      if (c.target) {
        // Target: a random fine set, partly reached and partly not.
        support = random_coords(rng, batches, -7, 7, out_stride, 0.2);
        params.target = coords_array(support);
      } else {
        support = ref_support(RefKind::transposed, in.coords, c.in_stride, spec, nullptr);
      }
      const SparseTensor y = ops::pool_transpose3d(in.x, params);
      ASSERT_EQ(coords_from_array(y.coords(), y.rows()), support);
      EXPECT_EQ(y.stride(), int3(out_stride));
      const auto edges = ref_edges(c.target ? RefKind::target_transposed : RefKind::transposed, in.coords, c.in_stride,
                                   support, out_stride, spec);
      std::vector<double> sum(support.size() * ch, 0.0), mag(sum.size(), 0.0);
      std::vector<int> count(support.size(), 0);
      for (const RefEdge& e : edges) {
        ++count[static_cast<std::size_t>(e.out_row)];
        for (int j = 0; j < ch; ++j) {
          const double v = in.feats[static_cast<std::size_t>(e.in_row * ch + j)];
          sum[static_cast<std::size_t>(e.out_row * ch + j)] += v;
          mag[static_cast<std::size_t>(e.out_row * ch + j)] += std::abs(v);
        }
      }
      int unreached = 0;
      for (std::size_t o = 0; o < support.size(); ++o) {
        unreached += count[o] == 0;
        for (int j = 0; j < ch; ++j) {
          const std::size_t i = o * static_cast<std::size_t>(ch) + static_cast<std::size_t>(j);
          if (count[o] > 0) {
            sum[i] /= count[o];
            mag[i] /= count[o];
          }
          mag[i] += 1e-30;
        }
      }
      if (c.target) EXPECT_GT(unreached, 0) << "the target should hold unreached rows";
      expect_values(y, sum, mag, c.dtype);
    }
  }
}

TEST(PoolTranspose3d, EmptyAndOneRow) {
  const auto m = CoordinateManager::create();
  const SparseTensor empty = SparseTensor::from_coords(
      Array::empty(Shape{0, 4}, DType::i32), Array::empty(Shape{0, 3}, DType::f32), {.stride = Int3{2}, .manager = m});
  const SparseTensor y = ops::pool_transpose3d(empty);
  EXPECT_EQ(y.rows(), 0);
  EXPECT_EQ(y.stride(), Int3{1});
  // One row at a negative coordinate, batch 2: all 8 children receive it.
  const SparseTensor one =
      SparseTensor::from_coords(Array::from_vector(std::vector<std::int32_t>{2, -4, 6, -2}, Shape{1, 4}),
                                make_array({1.5, -2}, Shape{1, 2}, DType::f32), {.stride = Int3{2}, .manager = m});
  const SparseTensor z = ops::pool_transpose3d(one);
  ASSERT_EQ(z.rows(), 8);
  const auto v = to_doubles(z.feats());
  for (int r = 0; r < 8; ++r) {
    EXPECT_EQ(v[static_cast<std::size_t>(2 * r)], 1.5);
    EXPECT_EQ(v[static_cast<std::size_t>(2 * r + 1)], -2.0);
  }
}

TEST(PoolTranspose3d, ErrorPaths) {
  const auto m = CoordinateManager::create();
  const SparseTensor x =
      SparseTensor::from_coords(Array::from_vector(std::vector<std::int32_t>{0, 2, 4, 6}, Shape{1, 4}),
                                make_array({1}, Shape{1, 1}, DType::f32), {.stride = Int3{2}, .manager = m});
  expect_error<ValueError>(m, [&] { ops::pool_transpose3d(x, {.stride = Int3{4}}); }, {"[pool_transpose3d]", "stride"});
  expect_error<ValueError>(m, [&] { ops::pool_transpose3d(x, {.kernel_size = Int3{0}}); },
                           {"[pool_transpose3d]", "kernel_size"});
  expect_error<ValueError>(m, [&] { ops::pool_transpose3d(SparseTensor()); }, {"[pool_transpose3d]", "'x'"});
  // Target at the wrong stride, from another manager, or not divisible.
  const SparseTensor wrong =
      SparseTensor::from_coords(Array::from_vector(std::vector<std::int32_t>{0, 2, 4, 6}, Shape{1, 4}),
                                make_array({1}, Shape{1, 1}, DType::f32), {.stride = Int3{2}, .manager = m});
  expect_error<ValueError>(m, [&] { ops::pool_transpose3d(x, {.target = wrong}); },
                           {"[pool_transpose3d]", "'target'", "stride"});
  const SparseTensor other =
      SparseTensor::from_coords(Array::from_vector(std::vector<std::int32_t>{0, 1, 4, 6}, Shape{1, 4}),
                                make_array({1}, Shape{1, 1}, DType::f32), {.manager = CoordinateManager::create()});
  expect_error<ValueError>(m, [&] { ops::pool_transpose3d(x, {.target = other}); },
                           {"[pool_transpose3d]", "'target'", "manager"});
  expect_error<ValueError>(m,
                           [&] {
                             ops::pool_transpose3d(x, {.target = Array::zeros(Shape{2, 3}, DType::i32)});
                           },
                           {"[pool_transpose3d]", "'target'"});
  expect_error<TypeError>(m,
                          [&] {
                            ops::pool_transpose3d(x, {.target = Array::zeros(Shape{2, 4}, DType::f32)});
                          },
                          {"[pool_transpose3d]", "'target'"});
}

// ---- trilinear_upsample3d ---------------------------------------------------------

// Brute force over every coarse row: Appendix A's weights and normalisation.
void ref_upsample(const std::vector<Coord>& coarse, const I3& cs, const std::vector<double>& feats, int ch,
                  const std::vector<Coord>& fine, const I3& fs, const I3& r, std::vector<double>& out,
                  std::vector<double>& mag) {
  out.assign(fine.size() * ch, 0.0);
  mag.assign(fine.size() * ch, 1e-30);
  for (std::size_t o = 0; o < fine.size(); ++o) {
    double total = 0;
    std::vector<double> acc(ch, 0.0), am(ch, 0.0);
    for (std::size_t i = 0; i < coarse.size(); ++i) {
      if (coarse[i][0] != fine[o][0]) continue;
      double w = 1;
      for (int a = 0; a < 3; ++a) {
        const long f = fine[o][a + 1] / fs[a];
        const long u = coarse[i][a + 1] / cs[a];
        const long d = std::labs(f - u * r[a]);
        if (d >= r[a]) w = 0;
        w *= 1.0 - static_cast<double>(d) / r[a];
      }
      if (w <= 0) continue;
      total += w;
      for (int j = 0; j < ch; ++j) {
        acc[j] += w * feats[i * ch + j];
        am[j] += w * std::abs(feats[i * ch + j]);
      }
    }
    if (total > 0) {
      for (int j = 0; j < ch; ++j) {
        out[o * ch + j] = acc[j] / total;
        mag[o * ch + j] = am[j] / total + 1e-30;
      }
    }
  }
}

std::vector<Coord> ref_children(const std::vector<Coord>& coarse, const I3& cs, const I3& r, const I3& fs) {
  std::vector<Coord> out;
  for (const Coord& u : coarse)
    for (int dx = 0; dx < r[0]; ++dx)
      for (int dy = 0; dy < r[1]; ++dy)
        for (int dz = 0; dz < r[2]; ++dz)
          out.push_back({u[0], (u[1] / cs[0] * r[0] + dx) * fs[0], (u[2] / cs[1] * r[1] + dy) * fs[1],
                         (u[3] / cs[2] * r[2] + dz) * fs[2]});
  return out;
}

struct TuCase {
  I3 ratio, in_stride;
  bool target;
  DType dtype;
};

TEST(TrilinearUpsample3d, MatchesTheAppendixFormula) {
  const std::vector<TuCase> cases{
      {{2, 2, 2}, {2, 2, 2}, false, DType::f32}, {{2, 2, 2}, {4, 4, 4}, true, DType::f32},
      {{2, 2, 2}, {2, 2, 2}, true, DType::f16},  {{4, 2, 1}, {4, 2, 2}, false, DType::f64},
      {{3, 3, 3}, {3, 3, 3}, true, DType::f64},  {{1, 1, 1}, {2, 2, 2}, false, DType::bf16},
      {{2, 2, 2}, {8, 8, 8}, true, DType::bf16},
  };
  int id = 0;
  for (const TuCase& c : cases) {
    for (int batches : {1, 2}) {
      SCOPED_TRACE("case " + std::to_string(id) + " batches " + std::to_string(batches));
      Rng rng(static_cast<std::uint64_t>(700 + ++id));
      const auto m = CoordinateManager::create();
      const int ch = 1 + id % 5;
      const Input in = make_input(rng, m, batches, -4, 4, c.in_stride, 0.35, ch, c.dtype);
      const I3 fs{c.in_stride[0] / c.ratio[0], c.in_stride[1] / c.ratio[1], c.in_stride[2] / c.ratio[2]};
      ops::TrilinearUpsample3dParams params{int3(c.ratio)};
      std::vector<Coord> fine;
      if (c.target) {
        // Every fine site of a box (reached, partly reached and unreached rows).
        fine = random_coords(rng, batches, -4 * c.ratio[0] - 3, 4 * c.ratio[0] + 3, fs, 0.15);
        params.target = SparseTensor::from_coords(
            coords_array(fine), Array::zeros(Shape{static_cast<std::int64_t>(fine.size()), 1}, DType::f32),
            {.stride = int3(fs), .manager = m});
      } else {
        fine = ref_children(in.coords, c.in_stride, c.ratio, fs);
      }
      const SparseTensor y = ops::trilinear_upsample3d(in.x, params);
      ASSERT_EQ(coords_from_array(y.coords(), y.rows()), fine);
      EXPECT_EQ(y.stride(), int3(fs));
      EXPECT_NE(y.key(), in.x.key());
      std::vector<double> expect, mag;
      ref_upsample(in.coords, c.in_stride, in.feats, ch, fine, fs, c.ratio, expect, mag);
      expect_values(y, expect, mag, c.dtype);
      if (!c.target) {
        // The children set is registered with batch counts and works as a relation input.
        ASSERT_TRUE(y.batch_counts().has_value());
        const SparseTensor back =
            ops::pool_transpose3d(in.x, {.kernel_size = int3(c.ratio), .stride = int3(c.ratio), .target = y});
        EXPECT_EQ(back.key(), y.key());
      }
    }
  }
}

TEST(TrilinearUpsample3d, KnownWeightsForRatioTwo) {
  // Coarse voxels at logical x = 0 and 1 (stride 2), values 0 and 4: fine
  // logical x = 0, 1, 2, 3 get 0, (0.5*0 + 0.5*4)/1 = 2, 4, and 4 (the coarse
  // voxel at x = 2 is missing, so 3 is renormalised onto x = 1 alone).
  const auto m = CoordinateManager::create();
  const SparseTensor x =
      SparseTensor::from_coords(Array::from_vector(std::vector<std::int32_t>{1, 0, -2, 0, 1, 2, -2, 0}, Shape{2, 4}),
                                make_array({0, 4}, Shape{2, 1}, DType::f32), {.stride = Int3{2}, .manager = m});
  const Array target = Array::from_vector(
      std::vector<std::int32_t>{1, 0, -2, 0, 1, 1, -2, 0, 1, 2, -2, 0, 1, 3, -2, 0, 1, 3, -1, 0, 0, 0, -2, 0},
      Shape{6, 4});
  const SparseTensor y = ops::trilinear_upsample3d(x, {.target = target});
  // (3, -1): y is odd, so both y neighbours (-1 and 0 logical coarse) weigh
  // 0.5; only (1, -1) exists -> 4. Batch 0 has no coarse voxels -> 0.
  EXPECT_EQ(to_doubles(y.feats()), (std::vector<double>{0, 2, 4, 4, 4, 0}));
}

TEST(TrilinearUpsample3d, EmptyInput) {
  const auto m = CoordinateManager::create();
  const SparseTensor empty = SparseTensor::from_coords(
      Array::empty(Shape{0, 4}, DType::i32), Array::empty(Shape{0, 2}, DType::f16), {.stride = Int3{4}, .manager = m});
  const SparseTensor y = ops::trilinear_upsample3d(empty);
  EXPECT_EQ(y.rows(), 0);
  EXPECT_EQ(y.stride(), Int3{2});
  EXPECT_EQ(y.channels(), 2);
}

TEST(TrilinearUpsample3d, ErrorPaths) {
  const auto m = CoordinateManager::create();
  const SparseTensor x =
      SparseTensor::from_coords(Array::from_vector(std::vector<std::int32_t>{0, 2, 4, 6}, Shape{1, 4}),
                                make_array({1}, Shape{1, 1}, DType::f32), {.stride = Int3{2}, .manager = m});
  expect_error<ValueError>(m, [&] { ops::trilinear_upsample3d(x, {.stride = Int3{4}}); },
                           {"[trilinear_upsample3d]", "'stride'", "does not divide"});
  expect_error<ValueError>(m, [&] { ops::trilinear_upsample3d(x, {.stride = Int3{0}}); },
                           {"[trilinear_upsample3d]", "'stride'", "positive"});
  expect_error<ValueError>(m, [&] { ops::trilinear_upsample3d(SparseTensor()); }, {"[trilinear_upsample3d]", "'x'"});
  expect_error<ValueError>(m, [&] { ops::trilinear_upsample3d(x, {.target = x}); },
                           {"[trilinear_upsample3d]", "'target'", "stride"});
  // Children beyond the key range: logical 2^17 - 1 at stride 1 -> fine logical 2^18 - 2 at stride 1/2... use
  // a coarse coordinate near the edge at stride 2: logical 2^17 - 1 -> children 2^18 - 2 (too large).
  const std::int32_t edge = ((1 << 17) - 1) * 2;
  const SparseTensor far =
      SparseTensor::from_coords(Array::from_vector(std::vector<std::int32_t>{0, edge, 0, 0}, Shape{1, 4}),
                                make_array({1}, Shape{1, 1}, DType::f32), {.stride = Int3{2}, .manager = m});
  expect_error<ValueError>(m, [&] { ops::trilinear_upsample3d(far); }, {"[trilinear_upsample3d]", "key range"});
}

}  // namespace
}  // namespace lattice::testing

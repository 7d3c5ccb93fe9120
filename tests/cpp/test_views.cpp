// Relation views checked against the edge list they are built from.
#include <bit>

#include <gtest/gtest.h>

#include "lattice/core/relation.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

struct Fixture {
  std::shared_ptr<CoordinateManager> manager = CoordinateManager::create();
  SparseTensor x;
  std::shared_ptr<const Relation> rel;
};

Fixture make(RelationKind kind, Int3 size, Int3 stride, std::uint64_t seed) {
  Fixture f;
  Rng rng(seed);
  // Transposed kinds need an input stride that the kernel stride divides.
  const Int3 in_stride = is_transposed_kind(kind) ? stride : Int3{1};
  const auto coords = random_coords(rng, 2, -5, 5, {in_stride.x, in_stride.y, in_stride.z}, 0.3);
  const auto n = static_cast<std::int64_t>(coords.size());
  f.x = SparseTensor::from_coords(coords_array(coords), Array::zeros(Shape{n, 1}, DType::f32),
                                  {.stride = in_stride, .manager = f.manager});
  f.rel = f.manager->relation(f.x.coordinate_set(), kind, {size, stride, Int3{0}, Int3{1}}, nullptr, "test");
  return f;
}

class Views : public ::testing::TestWithParam<std::tuple<RelationKind, int>> {};

TEST_P(Views, ConsistentWithEdges) {
  const auto [kind, k] = GetParam();
  const Fixture f = make(kind, Int3{k}, Int3{kind == RelationKind::submanifold ? 1 : (k == 1 ? 1 : 2)}, 11 + k);
  const Relation& rel = *f.rel;
  const std::int64_t ne = rel.num_edges();
  const std::int64_t n_out = rel.output()->rows();
  const std::int64_t n_in = f.x.rows();
  const std::int64_t volume = rel.volume();
  const auto in_rows = rel.in_rows().to_vector<std::int32_t>();
  const auto out_rows = rel.out_rows().to_vector<std::int32_t>();
  const auto ks = rel.kernel_ids().to_vector<std::int32_t>();
  ASSERT_GT(ne, 0);

  // Output CSR.
  const auto row_offsets = rel.output_csr().row_offsets.to_vector<std::int32_t>();
  ASSERT_EQ(static_cast<std::int64_t>(row_offsets.size()), rel.output()->capacity() + 1);
  for (std::int64_t o = 0; o < n_out; ++o)
    for (std::int32_t e = row_offsets[static_cast<std::size_t>(o)]; e < row_offsets[static_cast<std::size_t>(o) + 1];
         ++e)
      ASSERT_EQ(out_rows[static_cast<std::size_t>(e)], o);
  EXPECT_EQ(row_offsets.back(), ne);

  // Input CSR: every edge once, grouped by input row, ascending ids.
  const InputCsr& icsr = rel.input_csr();
  const auto ioff = icsr.offsets.to_vector<std::int32_t>();
  const auto iids = icsr.edge_ids.to_vector<std::int32_t>();
  ASSERT_EQ(static_cast<std::int64_t>(ioff.size()), n_in + 1);
  std::vector<int> seen(static_cast<std::size_t>(ne), 0);
  for (std::int64_t i = 0; i < n_in; ++i)
    for (std::int32_t j = ioff[static_cast<std::size_t>(i)]; j < ioff[static_cast<std::size_t>(i) + 1]; ++j) {
      const std::int32_t e = iids[static_cast<std::size_t>(j)];
      ASSERT_EQ(in_rows[static_cast<std::size_t>(e)], i);
      if (j > ioff[static_cast<std::size_t>(i)]) ASSERT_LT(iids[static_cast<std::size_t>(j) - 1], e);
      ++seen[static_cast<std::size_t>(e)];
    }
  for (int s : seen) ASSERT_EQ(s, 1);

  // Kernel CSR.
  const KernelCsr& kcsr = rel.kernel_csr();
  const auto koff = kcsr.offsets.to_vector<std::int32_t>();
  const auto kids = kcsr.edge_ids.to_vector<std::int32_t>();
  ASSERT_EQ(static_cast<std::int64_t>(koff.size()), volume + 1);
  for (std::int64_t kk = 0; kk < volume; ++kk)
    for (std::int32_t j = koff[static_cast<std::size_t>(kk)]; j < koff[static_cast<std::size_t>(kk) + 1]; ++j)
      ASSERT_EQ(ks[static_cast<std::size_t>(kids[static_cast<std::size_t>(j)])], kk);
  EXPECT_EQ(koff.back(), ne);

  // Implicit-GEMM map and masks.
  const ImplicitGemmMap& ig = rel.implicit_gemm_map();
  const auto map = ig.out_in_map.to_vector<std::int32_t>();
  const auto masks = ig.masks.to_vector<std::uint32_t>();
  EXPECT_EQ(ig.mask_words, static_cast<int>((volume + 31) / 32));
  std::int64_t present = 0;
  for (std::int64_t o = 0; o < n_out; ++o)
    for (std::int64_t kk = 0; kk < volume; ++kk) {
      const std::int32_t i = map[static_cast<std::size_t>(o * volume + kk)];
      const bool bit = (masks[static_cast<std::size_t>(o * ig.mask_words + kk / 32)] >> (kk % 32)) & 1u;
      ASSERT_EQ(bit, i >= 0);
      present += i >= 0;
    }
  EXPECT_EQ(present, ne);
  for (std::int64_t e = 0; e < ne; ++e)
    ASSERT_EQ(
        map[static_cast<std::size_t>(out_rows[static_cast<std::size_t>(e)] * volume + ks[static_cast<std::size_t>(e)])],
        in_rows[static_cast<std::size_t>(e)]);

  // Input-side map: every edge at (in row, offset), nothing else; for a
  // submanifold relation, the forward map with the offsets mirrored.
  const InputGemmMap& im = rel.input_gemm_map();
  const auto imap = im.in_out_map.to_vector<std::int32_t>();
  const auto imasks = im.masks.to_vector<std::uint32_t>();
  ASSERT_EQ(im.in_out_map.dim(0), rel.input_capacity());
  std::int64_t in_present = 0;
  for (std::int64_t i = 0; i < n_in; ++i)
    for (std::int64_t kk = 0; kk < volume; ++kk) {
      const std::int32_t o = imap[static_cast<std::size_t>(i * volume + kk)];
      const bool bit = (imasks[static_cast<std::size_t>(i * im.mask_words + kk / 32)] >> (kk % 32)) & 1u;
      ASSERT_EQ(bit, o >= 0);
      in_present += o >= 0;
      if (kind == RelationKind::submanifold && k % 2 == 1)
        ASSERT_EQ(o, map[static_cast<std::size_t>(i * volume + volume - 1 - kk)]);
    }
  EXPECT_EQ(in_present, ne);
  for (std::int64_t e = 0; e < ne; ++e)
    ASSERT_EQ(
        imap[static_cast<std::size_t>(in_rows[static_cast<std::size_t>(e)] * volume + ks[static_cast<std::size_t>(e)])],
        out_rows[static_cast<std::size_t>(e)]);
  EXPECT_EQ(&rel.input_gemm_map(), &im);

  // Sorted map: a permutation, equal masks adjacent, tile OR-masks cover their rows.
  const int tile = 16;
  const SortedImplicitGemmMap& s = rel.sorted_implicit_gemm_map(tile);
  const auto perm = s.perm.to_vector<std::int32_t>();
  const auto sorted = s.sorted_map.to_vector<std::int32_t>();
  const auto sorted_kt = s.sorted_map_kt.to_vector<std::int32_t>();
  const auto tiles = s.tile_masks.to_vector<std::uint32_t>();
  const std::int64_t cap = rel.output()->capacity();
  std::vector<int> hit(static_cast<std::size_t>(cap), 0);
  for (std::int32_t p : perm) ++hit[static_cast<std::size_t>(p)];
  for (int h : hit) ASSERT_EQ(h, 1);
  std::set<std::vector<std::uint32_t>> closed;  // masks whose run has ended
  std::vector<std::uint32_t> prev;
  for (std::int64_t j = 0; j < n_out; ++j) {
    const std::int64_t o = perm[static_cast<std::size_t>(j)];
    std::vector<std::uint32_t> m(masks.begin() + o * ig.mask_words, masks.begin() + (o + 1) * ig.mask_words);
    if (j > 0 && m != prev) {
      closed.insert(prev);
      ASSERT_EQ(closed.count(m), 0u) << "rows with equal masks must be adjacent";
    }
    prev = m;
    for (std::int64_t kk = 0; kk < volume; ++kk) {
      ASSERT_EQ(sorted[static_cast<std::size_t>(j * volume + kk)], map[static_cast<std::size_t>(o * volume + kk)]);
      ASSERT_EQ(sorted_kt[static_cast<std::size_t>(kk * cap + j)], map[static_cast<std::size_t>(o * volume + kk)]);
    }
    for (int w = 0; w < ig.mask_words; ++w)
      ASSERT_EQ(tiles[static_cast<std::size_t>((j / tile) * ig.mask_words + w)] & m[static_cast<std::size_t>(w)],
                m[static_cast<std::size_t>(w)]);
  }
  // Views are cached: the same object comes back.
  EXPECT_EQ(&rel.implicit_gemm_map(), &ig);
  EXPECT_EQ(&rel.sorted_implicit_gemm_map(tile), &s);
}

INSTANTIATE_TEST_SUITE_P(KindsAndSizes, Views,
                         ::testing::Combine(::testing::Values(RelationKind::submanifold, RelationKind::forward,
                                                              RelationKind::transposed, RelationKind::generative),
                                            ::testing::Values(1, 2, 3, 5)),
                         [](const auto& info) {
                           return std::string(relation_kind_name(std::get<0>(info.param))) + "_k" +
                                  std::to_string(std::get<1>(info.param));
                         });

TEST(Views, FiveCubedKernelUsesFourMaskWords) {
  const Fixture f = make(RelationKind::submanifold, Int3{5}, Int3{1}, 3);
  const ImplicitGemmMap& ig = f.rel->implicit_gemm_map();
  EXPECT_EQ(f.rel->volume(), 125);
  EXPECT_EQ(ig.mask_words, 4);
  // Every row has its centre offset (k = 62): bit 30 of word 1.
  const auto masks = ig.masks.to_vector<std::uint32_t>();
  for (std::int64_t o = 0; o < f.x.rows(); ++o) EXPECT_TRUE((masks[static_cast<std::size_t>(o * 4 + 1)] >> 30) & 1u);
}

}  // namespace
}  // namespace lattice::testing

// Relations against brute force: output support (values and order), edge
// sets and edge order, determinism across runs, device-side counts, caching.
#include <gtest/gtest.h>

#include "lattice/core/relation.hpp"
#include "relation/build.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

struct RelCase {
  RefKind kind;
  I3 size, stride, padding, dilation, in_stride;
  int batches;
};

RelationKind to_kind(RefKind k) {
  switch (k) {
    case RefKind::forward:
      return RelationKind::forward;
    case RefKind::target:
      return RelationKind::target;
    case RefKind::submanifold:
      return RelationKind::submanifold;
    case RefKind::transposed:
      return RelationKind::transposed;
    case RefKind::target_transposed:
      return RelationKind::target_transposed;
    case RefKind::generative:
      return RelationKind::generative;
  }
  return RelationKind::forward;
}

Int3 to_int3(const I3& v) { return {v[0], v[1], v[2]}; }

std::vector<RelCase> relation_cases() {
  std::vector<RelCase> out;
  const std::vector<I3> sizes{{1, 1, 1}, {2, 2, 2}, {3, 3, 3}, {5, 5, 5}, {3, 1, 3}, {4, 2, 3}};
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const I3 s = sizes[i];
    const bool odd = s[0] % 2 && s[1] % 2 && s[2] % 2;
    const I3 pad = i % 2 ? I3{1, 0, 2} : I3{0, 0, 0};
    const I3 dil = i == 2 ? I3{2, 1, 3} : I3{1, 1, 1};
    out.push_back({RefKind::forward, s, {2, 2, 2}, pad, dil, {1, 1, 1}, 2});
    out.push_back({RefKind::forward, s, {2, 1, 3}, pad, dil, {2, 2, 2}, 1});
    out.push_back({RefKind::forward, s, {1, 1, 1}, pad, dil, {1, 1, 1}, 2});
    out.push_back({RefKind::target, s, {2, 2, 2}, pad, dil, {1, 1, 1}, 2});
    if (odd) out.push_back({RefKind::submanifold, s, {1, 1, 1}, {0, 0, 0}, dil, {1, 2, 1}, 3});
    out.push_back({RefKind::transposed, s, {2, 2, 2}, pad, dil, {2, 2, 2}, 2});
    out.push_back({RefKind::transposed, s, {2, 1, 2}, pad, dil, {4, 2, 2}, 1});
    out.push_back({RefKind::target_transposed, s, {2, 2, 2}, pad, dil, {2, 2, 2}, 2});
    out.push_back({RefKind::generative, s, {2, 2, 2}, {0, 0, 0}, {1, 1, 1}, {2, 2, 2}, 2});
    out.push_back({RefKind::generative, s, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}, {1, 1, 1}, 1});
  }
  return out;
}

class RelationBruteForce : public ::testing::TestWithParam<RelCase> {};

TEST_P(RelationBruteForce, SupportAndEdgesMatch) {
  const RelCase c = GetParam();
  Rng rng(std::hash<std::string>{}(::testing::UnitTest::GetInstance()->current_test_info()->name()));
  // Small boxes keep the cubic brute force (outputs x offsets x inputs) quick.
  const auto in_coords = random_coords(rng, c.batches, -4, 3, c.in_stride, 0.25);
  auto manager = CoordinateManager::create();
  const auto n = static_cast<std::int64_t>(in_coords.size());
  const SparseTensor x = SparseTensor::from_coords(coords_array(in_coords), Array::zeros(Shape{n, 1}, DType::f32),
                                                   {.stride = to_int3(c.in_stride), .manager = manager});
  const RefSpec spec{c.size, c.stride, c.padding, c.dilation};
  const KernelSpec kspec{to_int3(c.size), to_int3(c.stride), to_int3(c.padding), to_int3(c.dilation)};
  const RelationKind kind = to_kind(c.kind);
  const Int3 out_stride = detail::output_stride(kind, x.stride(), kspec.stride, "test");

  std::vector<Coord> target;
  std::shared_ptr<const CoordinateSet> target_set;
  if (c.kind == RefKind::target || c.kind == RefKind::target_transposed) {
    target = random_coords(rng, c.batches, -4, 4, {out_stride.x, out_stride.y, out_stride.z}, 0.3);
    const auto nt = static_cast<std::int64_t>(target.size());
    target_set = SparseTensor::from_coords(coords_array(target), Array::zeros(Shape{nt, 1}, DType::f32),
                                           {.stride = out_stride, .manager = manager})
                     .coordinate_set();
  }
  auto rel = manager->relation(x.coordinate_set(), kind, kspec, target_set, "test");
  const auto expect_support = ref_support(c.kind, in_coords, c.in_stride, spec, target_set ? &target : nullptr);
  const auto out_set = rel->output();
  ASSERT_NE(out_set, nullptr);
  EXPECT_EQ(coords_from_array(out_set->coords(), out_set->rows()), expect_support);
  EXPECT_EQ(out_set->stride(), out_stride);

  const auto expect_edges =
      ref_edges(c.kind, in_coords, c.in_stride, expect_support, {out_stride.x, out_stride.y, out_stride.z}, spec);
  const std::int64_t ne = rel->num_edges();
  ASSERT_EQ(ne, static_cast<std::int64_t>(expect_edges.size()));
  const auto in_rows = rel->in_rows().to_vector<std::int32_t>();
  const auto out_rows = rel->out_rows().to_vector<std::int32_t>();
  const auto ks = rel->kernel_ids().to_vector<std::int32_t>();
  for (std::int64_t e = 0; e < ne; ++e) {
    const RefEdge got{in_rows[static_cast<std::size_t>(e)], out_rows[static_cast<std::size_t>(e)],
                      ks[static_cast<std::size_t>(e)]};
    ASSERT_EQ(got, expect_edges[static_cast<std::size_t>(e)]) << "edge " << e;
  }
  // Device-side counts (edge_count, out_count).
  const auto counts = rel->counts().to_vector<std::int32_t>();
  EXPECT_EQ(counts[0], ne);
  EXPECT_EQ(counts[1], static_cast<std::int32_t>(expect_support.size()));
  // Generative with a stride that covers the kernel: out row = in row * K + k.
  if (c.kind == RefKind::generative && c.stride[0] >= (c.size[0] - 1) * c.dilation[0] + 1 &&
      c.stride[1] >= (c.size[1] - 1) * c.dilation[1] + 1 && c.stride[2] >= (c.size[2] - 1) * c.dilation[2] + 1) {
    const std::int64_t volume = kspec.volume();
    EXPECT_EQ(out_set->rows(), n * volume);
    for (std::int64_t e = 0; e < ne; ++e) {
      EXPECT_EQ(out_rows[static_cast<std::size_t>(e)],
                in_rows[static_cast<std::size_t>(e)] * volume + ks[static_cast<std::size_t>(e)]);
    }
  }
}

std::string case_name(const ::testing::TestParamInfo<RelCase>& info) {
  const RelCase& c = info.param;
  auto i3 = [](const I3& v) { return std::to_string(v[0]) + "x" + std::to_string(v[1]) + "x" + std::to_string(v[2]); };
  return std::to_string(info.index) + "_" + std::string(relation_kind_name(to_kind(c.kind))) + "_k" + i3(c.size) +
         "_s" + i3(c.stride) + "_p" + i3(c.padding) + "_d" + i3(c.dilation) + "_in" + i3(c.in_stride);
}

INSTANTIATE_TEST_SUITE_P(Kinds, RelationBruteForce, ::testing::ValuesIn(relation_cases()), case_name);

TEST(Relation, DeterministicAcrossRunsAndManagers) {
  Rng rng(5);
  const auto coords = random_coords(rng, 2, -6, 6, {1, 1, 1}, 0.2);
  const auto n = static_cast<std::int64_t>(coords.size());
  std::vector<std::vector<std::int32_t>> first;
  for (int run = 0; run < 3; ++run) {
    auto manager = CoordinateManager::create();
    const SparseTensor x =
        SparseTensor::from_coords(coords_array(coords), Array::zeros(Shape{n, 1}, DType::f32), {.manager = manager});
    for (RelationKind kind : {RelationKind::forward, RelationKind::transposed, RelationKind::generative}) {
      const KernelSpec spec{Int3{3}, Int3{kind == RelationKind::forward ? 2 : 1}, Int3{0}, Int3{1}};
      auto rel = manager->relation(x.coordinate_set(), kind, spec, nullptr, "test");
      std::vector<std::int32_t> sig = rel->output()->coords().to_vector<std::int32_t>();
      for (const Array* a : {&rel->in_rows(), &rel->out_rows(), &rel->kernel_ids()}) {
        const auto v = a->to_vector<std::int32_t>();
        sig.insert(sig.end(), v.begin(), v.end());
      }
      if (run == 0) {
        first.push_back(sig);
      } else {
        EXPECT_EQ(sig, first[static_cast<std::size_t>(kind == RelationKind::forward      ? 0
                                                      : kind == RelationKind::transposed ? 1
                                                                                         : 2)]);
      }
    }
  }
}

TEST(Relation, EmptyAndSinglePoint) {
  auto manager = CoordinateManager::create();
  const SparseTensor empty = SparseTensor::from_coords(Array::empty(Shape{0, 4}, DType::i32),
                                                       Array::empty(Shape{0, 2}, DType::f32), {.manager = manager});
  for (RelationKind kind : {RelationKind::forward, RelationKind::submanifold, RelationKind::generative}) {
    const KernelSpec spec{Int3{3}, Int3{kind == RelationKind::submanifold ? 1 : 2}, Int3{0}, Int3{1}};
    const Int3 stride = kind == RelationKind::generative ? Int3{1} : spec.stride;
    auto rel = manager->relation(empty.coordinate_set(), kind, {spec.size, stride, spec.padding, spec.dilation},
                                 nullptr, "test");
    EXPECT_EQ(rel->num_edges(), 0);
    EXPECT_EQ(rel->output()->rows(), 0);
  }
  const SparseTensor one =
      SparseTensor::from_coords(Array::from_vector(std::vector<std::int32_t>{2, -7, 0, 131071}, Shape{1, 4}),
                                Array::zeros(Shape{1, 2}, DType::f32), {.manager = manager});
  auto subm = manager->relation(one.coordinate_set(), RelationKind::submanifold, {Int3{3}, Int3{1}, Int3{0}, Int3{1}},
                                nullptr, "test");
  ASSERT_EQ(subm->num_edges(), 1);
  EXPECT_EQ(subm->kernel_ids().to_vector<std::int32_t>()[0], 13);  // the centre of 3x3x3
  auto down = manager->relation(one.coordinate_set(), RelationKind::forward, {Int3{2}, Int3{2}, Int3{0}, Int3{1}},
                                nullptr, "test");
  EXPECT_EQ(down->output()->coords().to_vector<std::int32_t>(), (std::vector<std::int32_t>{2, -8, 0, 131070}));
}

TEST(Relation, TransposedOutputBeyondKeyRangeIsAnError) {
  auto manager = CoordinateManager::create();
  const SparseTensor x =
      SparseTensor::from_coords(Array::from_vector(std::vector<std::int32_t>{0, 0, 0, 131071}, Shape{1, 4}),
                                Array::zeros(Shape{1, 1}, DType::f32), {.manager = manager});
  // stride 1 transposed with a 3-kernel reaches z = 131072: outside +-2^17.
  EXPECT_THROW(manager->relation(x.coordinate_set(), RelationKind::transposed, {Int3{3}, Int3{1}, Int3{0}, Int3{1}},
                                 nullptr, "conv_transpose3d"),
               ValueError);
}

}  // namespace
}  // namespace lattice::testing

// A target-kind relation request that names exactly the output set of a cached
// forward / transposed / generative relation (same input, same spec) returns
// that relation instead of building a second one -- the plan-then-run pattern
// of lattice.torch -- and gives the same results as the target relation would.
#include <gtest/gtest.h>

#include "lattice/core/relation.hpp"
#include "lattice/ops/conv.hpp"
#include "lattice/ops/conv_grad.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

SparseTensor make_tensor(const std::shared_ptr<CoordinateManager>& m, std::uint64_t seed, int channels, I3 stride) {
  Rng rng(seed);
  const auto coords = random_coords(rng, 2, -6, 6, stride, 0.25);
  const auto n = static_cast<std::int64_t>(coords.size());
  const Array feats =
      make_array(random_values(rng, static_cast<std::size_t>(n * channels)), Shape{n, channels}, DType::f64);
  return SparseTensor::from_coords(coords_array(coords), feats,
                                   {.stride = Int3{stride[0], stride[1], stride[2]}, .manager = m});
}

Array random_weight(std::uint64_t seed, std::int64_t k, std::int64_t cin, std::int64_t cout) {
  Rng rng(seed);
  return make_array(random_values(rng, static_cast<std::size_t>(k * cin * cout)), Shape{k, cin, cout}, DType::f64);
}

// Same rows, bitwise (the reused relation has the same edge order).
void expect_same_feats(const SparseTensor& a, const SparseTensor& b) {
  ASSERT_EQ(a.rows(), b.rows());
  EXPECT_EQ(to_doubles(a.feats()), to_doubles(b.feats()));
}

TEST(RelationTargetReuse, ForwardOutputAsTargetReusesTheForwardRelation) {
  auto m = CoordinateManager::create();
  const SparseTensor x = make_tensor(m, 11, 3, {1, 1, 1});
  const Array w = random_weight(12, 27, 3, 2);
  const ops::Conv3dParams plain{.kernel_size = 3, .stride = 2};
  const SparseTensor y = ops::conv3d(x, w, std::nullopt, plain);
  const auto misses = m->cache_stats().misses;

  ops::Conv3dParams targeted = plain;
  targeted.coordinates = y;
  const SparseTensor yt = ops::conv3d(x, w, std::nullopt, targeted);
  EXPECT_EQ(yt.key(), y.key()) << "the target's identity is the output";
  expect_same_feats(yt, y);
  EXPECT_EQ(m->cache_stats().misses, misses) << "no second relation build";

  const KernelSpec spec{Int3{3}, Int3{2}, Int3{0}, Int3{1}};
  bool cached = false;
  auto forward = m->relation(x.coordinate_set(), RelationKind::forward, spec, nullptr, "test");
  auto target = m->relation(x.coordinate_set(), RelationKind::target, spec, y.coordinate_set(), "test", &cached);
  EXPECT_TRUE(cached);
  EXPECT_EQ(forward.get(), target.get());

  // The backward with the same target finds the same relation too.
  Rng rng(13);
  const SparseTensor dy = y.replace_feats(
      make_array(random_values(rng, static_cast<std::size_t>(y.rows() * 2)), Shape{y.capacity(), 2}, DType::f64));
  const ops::ConvGrads g_plain = ops::conv3d_backward(x, w, dy, plain);
  const ops::ConvGrads g_target = ops::conv3d_backward(x, w, dy, targeted);
  EXPECT_EQ(m->cache_stats().misses, misses);
  EXPECT_EQ(to_doubles(g_plain.input->feats()), to_doubles(g_target.input->feats()));
  EXPECT_EQ(to_doubles(*g_plain.weight), to_doubles(*g_target.weight));
}

TEST(RelationTargetReuse, TransposedAndGenerativeOutputsAsTargets) {
  auto m = CoordinateManager::create();
  const SparseTensor x = make_tensor(m, 21, 2, {2, 2, 2});
  const Array w = random_weight(22, 8, 2, 3);

  const SparseTensor yt = ops::conv_transpose3d(x, w, std::nullopt, {.kernel_size = 2, .stride = 2});
  auto misses = m->cache_stats().misses;
  const SparseTensor yt2 =
      ops::conv_transpose3d(x, w, std::nullopt, {.kernel_size = 2, .stride = 2, .coordinates = yt});
  EXPECT_EQ(yt2.key(), yt.key());
  expect_same_feats(yt2, yt);
  EXPECT_EQ(m->cache_stats().misses, misses);

  const SparseTensor yg = ops::generative_conv_transpose3d(x, w, std::nullopt, {.kernel_size = 2, .stride = 2});
  misses = m->cache_stats().misses;
  const SparseTensor yg2 =
      ops::generative_conv_transpose3d(x, w, std::nullopt, {.kernel_size = 2, .stride = 2, .coordinates = yg});
  EXPECT_EQ(yg2.key(), yg.key());
  expect_same_feats(yg2, yg);
  EXPECT_EQ(m->cache_stats().misses, misses);
}

TEST(RelationTargetReuse, OnlyTheExactOutputSetAndSpecAreReused) {
  auto m = CoordinateManager::create();
  const SparseTensor x = make_tensor(m, 31, 2, {1, 1, 1});
  const Array w = random_weight(32, 27, 2, 2);
  const SparseTensor y = ops::conv3d(x, w, std::nullopt, {.kernel_size = 3, .stride = 2});

  // Equal coordinate values under a new key: a separate target relation, same values.
  const SparseTensor copy =
      SparseTensor::from_coords(y.coords().to(Device::cpu()), y.feats(), {.stride = Int3{2}, .manager = m});
  auto misses = m->cache_stats().misses;
  const SparseTensor yc = ops::conv3d(x, w, std::nullopt, {.kernel_size = 3, .stride = 2, .coordinates = copy});
  EXPECT_EQ(m->cache_stats().misses, misses + 1);
  EXPECT_EQ(yc.key(), copy.key());
  expect_same_feats(yc, y);

  // Another spec onto y's set (padding 1): not y's producer, built separately.
  misses = m->cache_stats().misses;
  const SparseTensor yp =
      ops::conv3d(x, w, std::nullopt, {.kernel_size = 3, .stride = 2, .padding = 1, .coordinates = y});
  EXPECT_EQ(m->cache_stats().misses, misses + 1);
  EXPECT_EQ(yp.key(), y.key());

  // A padded transposed request onto a generative output is not the generative relation.
  const SparseTensor c = make_tensor(m, 33, 2, {2, 2, 2});
  const Array w2 = random_weight(34, 8, 2, 2);
  const SparseTensor g = ops::generative_conv_transpose3d(c, w2, std::nullopt, {.kernel_size = 2, .stride = 2});
  misses = m->cache_stats().misses;
  ops::conv_transpose3d(c, w2, std::nullopt, {.kernel_size = 2, .stride = 2, .padding = 1, .coordinates = g});
  EXPECT_EQ(m->cache_stats().misses, misses + 1);
}

TEST(RelationTargetReuse, EvictedProducerIsRebuiltAsATargetRelation) {
  auto m = CoordinateManager::create();
  const SparseTensor x = make_tensor(m, 41, 2, {1, 1, 1});
  const Array w = random_weight(42, 27, 2, 2);
  const SparseTensor y = ops::conv3d(x, w, std::nullopt, {.kernel_size = 3, .stride = 2});
  m->clear_cache();  // y keeps its set alive; the producer relation is gone
  const auto misses = m->cache_stats().misses;
  const SparseTensor yt = ops::conv3d(x, w, std::nullopt, {.kernel_size = 3, .stride = 2, .coordinates = y});
  EXPECT_EQ(m->cache_stats().misses, misses + 1);
  EXPECT_EQ(yt.key(), y.key());
  expect_same_feats(yt, y);
}

}  // namespace
}  // namespace lattice::testing

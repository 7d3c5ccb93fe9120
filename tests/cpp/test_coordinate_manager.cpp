// Keys, ownership, the relation cache (hits, reuse, bounds, expiry, clearing)
// and thread safety.
#include <thread>

#include <gtest/gtest.h>

#include "lattice/core/relation.hpp"
#include "lattice/ops/conv.hpp"
#include "support/test_support.hpp"

namespace lattice::testing {
namespace {

SparseTensor make_tensor(const std::shared_ptr<CoordinateManager>& m, std::uint64_t seed, int channels = 2) {
  Rng rng(seed);
  const auto coords = random_coords(rng, 1, -4, 4, {1, 1, 1}, 0.3);
  const auto n = static_cast<std::int64_t>(coords.size());
  return SparseTensor::from_coords(coords_array(coords), Array::zeros(Shape{n, channels}, DType::f32), {.manager = m});
}

const KernelSpec k_subm3{Int3{3}, Int3{1}, Int3{0}, Int3{1}};

TEST(CoordinateManager, KeysAreIdentityNotValue) {
  auto m = CoordinateManager::create();
  const SparseTensor a = make_tensor(m, 1), b = make_tensor(m, 1);
  EXPECT_NE(a.key(), b.key()) << "equal values inserted separately get different keys";
  EXPECT_EQ(a.key().manager_id, m->id());
  EXPECT_TRUE(m->owns(a.key()));
  EXPECT_EQ(m->find(a.key()), a.coordinate_set());
  const SparseTensor a2 = a.replace_feats(Array::zeros(Shape{a.capacity(), 5}, DType::f32));
  EXPECT_EQ(a2.key(), a.key());
  auto other = CoordinateManager::create();
  EXPECT_FALSE(other->owns(a.key()));
  EXPECT_EQ(other->find(a.key()), nullptr);
}

TEST(CoordinateManager, CacheHitsReuseTheSameRelation) {
  auto m = CoordinateManager::create();
  const SparseTensor x = make_tensor(m, 2);
  bool cached = true;
  auto r1 = m->relation(x.coordinate_set(), RelationKind::submanifold, k_subm3, nullptr, "test", &cached);
  EXPECT_FALSE(cached);
  auto r2 = m->relation(x.coordinate_set(), RelationKind::submanifold, k_subm3, nullptr, "test", &cached);
  EXPECT_TRUE(cached);
  EXPECT_EQ(r1.get(), r2.get());
  // Specs that differ only in fields the kind ignores share the entry.
  auto r3 =
      m->relation(x.coordinate_set(), RelationKind::submanifold, {Int3{3}, Int3{2}, Int3{1}, Int3{1}}, nullptr, "test");
  EXPECT_EQ(r1.get(), r3.get());
  const auto stats = m->cache_stats();
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.hits, 2u);
  // Convolutions through the op layer hit the same cache: twenty subm convs, one relation.
  const Array w = Array::zeros(Shape{27, 2, 2}, DType::f32);
  for (int i = 0; i < 20; ++i) ops::subm_conv3d(x, w);
  EXPECT_EQ(m->cache_stats().misses, 1u);
  // A strided conv's output set is reused: the same key comes back.
  const SparseTensor y1 =
      ops::conv3d(x, Array::zeros(Shape{8, 2, 2}, DType::f32), std::nullopt, {.kernel_size = 2, .stride = 2});
  const SparseTensor y2 =
      ops::conv3d(x, Array::zeros(Shape{8, 2, 2}, DType::f32), std::nullopt, {.kernel_size = 2, .stride = 2});
  EXPECT_EQ(y1.key(), y2.key());
}

TEST(CoordinateManager, EntriesDieWithTheirInputAndTheCacheIsBounded) {
  auto m = CoordinateManager::create();
  {
    const SparseTensor x = make_tensor(m, 3);
    m->relation(x.coordinate_set(), RelationKind::submanifold, k_subm3, nullptr, "test");
    EXPECT_EQ(m->cache_stats().relations, 1u);
  }
  // A stream of unrelated scans: the input of each dies before the next arrives.
  for (int i = 0; i < 50; ++i) {
    const SparseTensor x = make_tensor(m, 100 + static_cast<std::uint64_t>(i));
    m->relation(x.coordinate_set(), RelationKind::submanifold, k_subm3, nullptr, "test");
    m->relation(x.coordinate_set(), RelationKind::forward, {Int3{2}, Int3{2}, Int3{0}, Int3{1}}, nullptr, "test");
    EXPECT_LE(m->cache_stats().relations, 2u);
  }
  EXPECT_LE(m->cache_stats().coordinate_sets, 4u);
  // Live inputs beyond capacity are evicted least-recently-used first.
  m->set_cache_capacity(3);
  std::vector<SparseTensor> live;
  for (int i = 0; i < 6; ++i) {
    live.push_back(make_tensor(m, 500 + static_cast<std::uint64_t>(i)));
    m->relation(live.back().coordinate_set(), RelationKind::submanifold, k_subm3, nullptr, "test");
  }
  EXPECT_EQ(m->cache_stats().relations, 3u);
  bool cached = false;
  m->relation(live.back().coordinate_set(), RelationKind::submanifold, k_subm3, nullptr, "test", &cached);
  EXPECT_TRUE(cached);
  m->relation(live.front().coordinate_set(), RelationKind::submanifold, k_subm3, nullptr, "test", &cached);
  EXPECT_FALSE(cached) << "the oldest entry was evicted";
  m->clear_cache();
  EXPECT_EQ(m->cache_stats().relations, 0u);
}

TEST(CoordinateManager, ConcurrentRequestsBuildOnce) {
  auto m = CoordinateManager::create();
  const SparseTensor x = make_tensor(m, 9);
  std::vector<std::shared_ptr<const Relation>> got(8);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < got.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 20; ++rep) {
        got[t] = m->relation(x.coordinate_set(), RelationKind::submanifold, k_subm3, nullptr, "test");
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& r : got) EXPECT_EQ(r.get(), got[0].get());
  EXPECT_EQ(m->cache_stats().misses, 1u);
}

TEST(CoordinateManager, MixedManagersAreRejected) {
  auto m1 = CoordinateManager::create(), m2 = CoordinateManager::create();
  const SparseTensor a = make_tensor(m1, 4), b = make_tensor(m2, 4);
  EXPECT_THROW(m2->relation(a.coordinate_set(), RelationKind::submanifold, k_subm3, nullptr, "test"), ValueError);
  try {
    ops::conv3d(a, Array::zeros(Shape{8, 2, 2}, DType::f32), std::nullopt,
                {.kernel_size = 2, .stride = 1, .coordinates = b});
    FAIL() << "expected an error";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("[conv3d] argument 'coordinates'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lattice::testing

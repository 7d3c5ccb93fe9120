#include "lattice/core/coordinates.hpp"

#include <atomic>
#include <list>
#include <map>
#include <tuple>
#include <unordered_map>

#include "lattice/core/relation.hpp"
#include "relation/build.hpp"

namespace lattice {

std::string CoordinateMapKey::str() const {
  return detail::concat("CoordinateMapKey(id=", id, ", stride=", stride.str(), ", manager=", manager_id, ")");
}

CoordinateSet::CoordinateSet(Array coords, Array active_rows, Int3 stride, std::optional<Array> batch_counts,
                             CoordinateMapKey key, std::optional<std::int64_t> known_rows)
    : coords_(std::move(coords)),
      active_rows_(std::move(active_rows)),
      stride_(stride),
      batch_counts_(std::move(batch_counts)),
      key_(key),
      known_rows_(known_rows) {
  // CPU counts are free to read; remember them so hot paths never ask again.
  if (!known_rows_ && active_rows_.device().is_cpu()) known_rows_ = active_rows_.item_int();
}

std::optional<std::int64_t> CoordinateSet::known_rows() const {
  std::lock_guard lock(mutex_);
  return known_rows_;
}

std::int64_t CoordinateSet::rows() const {
  std::lock_guard lock(mutex_);
  if (!known_rows_) known_rows_ = active_rows_.item_int();
  return *known_rows_;
}

std::shared_ptr<const detail::CoordIndex> CoordinateSet::index(
    const std::function<std::shared_ptr<const detail::CoordIndex>()>& build) const {
  {
    std::lock_guard lock(mutex_);
    if (index_) return index_;
  }
  // Build outside the lock (build() may call rows()); the first finished build wins.
  auto built = build();
  std::lock_guard lock(mutex_);
  if (!index_) index_ = std::move(built);
  return index_;
}

namespace {

std::atomic<std::uint64_t> g_next_manager_id{1};

struct RelationCacheKey {
  std::uint64_t input_id;
  std::uint64_t target_id;
  KernelSpec spec;
  RelationKind kind;
  auto operator<=>(const RelationCacheKey&) const = default;
};

}  // namespace

struct CoordinateManager::Impl {
  // One cache entry; `build_mutex` makes concurrent requests for the same
  // relation build it once.
  struct Entry {
    std::weak_ptr<const CoordinateSet> input;
    std::weak_ptr<const CoordinateSet> target;
    bool has_target = false;
    std::mutex build_mutex;
    std::shared_ptr<const Relation> relation;
    std::list<RelationCacheKey>::iterator lru_pos;
  };

  mutable std::mutex mutex;
  std::uint64_t next_set_id = 1;
  std::unordered_map<std::uint64_t, std::weak_ptr<const CoordinateSet>> sets;
  std::map<RelationCacheKey, std::shared_ptr<Entry>> cache;
  std::list<RelationCacheKey> lru;  // front = most recently used
  std::size_t capacity = 512;
  RelationCacheStats stats;

  // Drops entries whose input or target set has died, then the least recently
  // used ones beyond capacity. Caller holds `mutex`.
  void evict_locked() {
    for (auto it = cache.begin(); it != cache.end();) {
      const Entry& e = *it->second;
      if (e.input.expired() || (e.has_target && e.target.expired())) {
        lru.erase(e.lru_pos);
        it = cache.erase(it);
        ++stats.evictions;
      } else {
        ++it;
      }
    }
    while (cache.size() > capacity && !lru.empty()) {
      cache.erase(lru.back());
      lru.pop_back();
      ++stats.evictions;
    }
    for (auto it = sets.begin(); it != sets.end();) {
      it = it->second.expired() ? sets.erase(it) : std::next(it);
    }
  }

  // The built, cached relation without target whose output set is `target`, for
  // a target-kind request (target: forward; target_transposed: transposed, or
  // generative when the spec has no padding and no dilation, the only specs
  // under which its rule equals the transposed one). Null when there is none.
  // Caller holds `mutex`; a hit counts as the producer's use (LRU).
  std::shared_ptr<const Relation> find_producer_locked(std::uint64_t input_id, RelationKind kind,
                                                       const KernelSpec& spec,
                                                       const std::shared_ptr<const CoordinateSet>& target) {
    if (!target || (kind != RelationKind::target && kind != RelationKind::target_transposed)) return nullptr;
    RelationKind candidates[2] = {RelationKind::forward, RelationKind::forward};
    int n = 1;
    if (kind == RelationKind::target_transposed) {
      candidates[0] = RelationKind::transposed;
      if (spec.padding == Int3{0} && spec.dilation == Int3{1}) candidates[n++] = RelationKind::generative;
    }
    for (int i = 0; i < n; ++i) {
      const RelationCacheKey producer{input_id, 0, detail::normalized_spec(candidates[i], spec), candidates[i]};
      auto it = cache.find(producer);
      if (it == cache.end() || !it->second->relation) continue;
      // `relation` is published under `mutex` (held here).
      const std::shared_ptr<const Relation>& rel = it->second->relation;
      if (rel->output() != target) continue;
      lru.splice(lru.begin(), lru, it->second->lru_pos);
      return rel;
    }
    return nullptr;
  }
};

CoordinateManager::CoordinateManager() : impl_(std::make_unique<Impl>()), id_(g_next_manager_id.fetch_add(1)) {}
CoordinateManager::~CoordinateManager() = default;

std::shared_ptr<CoordinateManager> CoordinateManager::create() {
  return std::shared_ptr<CoordinateManager>(new CoordinateManager());
}

std::shared_ptr<CoordinateManager> CoordinateManager::default_manager() {
  static const std::shared_ptr<CoordinateManager> manager = create();
  return manager;
}

std::shared_ptr<const CoordinateSet> CoordinateManager::insert(Array coords, Array active_rows, Int3 stride,
                                                               std::optional<Array> batch_counts,
                                                               std::optional<std::int64_t> known_rows) {
  std::lock_guard lock(impl_->mutex);
  const CoordinateMapKey key{impl_->next_set_id++, stride, id_};
  auto set = std::make_shared<const CoordinateSet>(std::move(coords), std::move(active_rows), stride,
                                                   std::move(batch_counts), key, known_rows);
  impl_->sets[key.id] = set;
  return set;
}

std::shared_ptr<const CoordinateSet> CoordinateManager::find(const CoordinateMapKey& key) const {
  if (!owns(key)) return nullptr;
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->sets.find(key.id);
  if (it == impl_->sets.end()) return nullptr;
  auto set = it->second.lock();
  if (set && set->stride() != key.stride) return nullptr;
  return set;
}

std::shared_ptr<const Relation> CoordinateManager::relation(const std::shared_ptr<const CoordinateSet>& input,
                                                            RelationKind kind, const KernelSpec& spec,
                                                            const std::shared_ptr<const CoordinateSet>& target,
                                                            const char* op, bool* was_cached) {
  check(input != nullptr, op, "input", "no coordinate set");
  check(owns(input->key()), op, "input", "coordinates belong to manager ", input->key().manager_id,
        ", not to this manager (", id_, "); tensors from different managers cannot be combined");
  if (target) {
    check(owns(target->key()), op, "coordinates", "target coordinates belong to manager ", target->key().manager_id,
          ", not to the input's manager (", id_, ")");
  }
  const RelationCacheKey key{input->key().id, target ? target->key().id : 0, detail::normalized_spec(kind, spec), kind};
  std::shared_ptr<Impl::Entry> entry;
  {
    std::lock_guard lock(impl_->mutex);
    // A target request naming exactly the output set of a cached forward
    // (transposed, generative) relation with the same spec is that relation:
    // same edge rule, same output rows, same (output, k, input) edge order.
    // Reusing it lets a caller plan an output set and then run against it as
    // a target without a second relation build.
    if (auto reused = impl_->find_producer_locked(input->key().id, kind, spec, target)) {
      ++impl_->stats.hits;
      if (was_cached != nullptr) *was_cached = true;
      return reused;
    }
    auto it = impl_->cache.find(key);
    if (it != impl_->cache.end()) {
      entry = it->second;
      impl_->lru.splice(impl_->lru.begin(), impl_->lru, entry->lru_pos);
    } else {
      entry = std::make_shared<Impl::Entry>();
      entry->input = input;
      entry->target = target;
      entry->has_target = target != nullptr;
      impl_->lru.push_front(key);
      entry->lru_pos = impl_->lru.begin();
      impl_->cache.emplace(key, entry);
    }
  }
  std::lock_guard build_lock(entry->build_mutex);
  if (was_cached != nullptr) *was_cached = entry->relation != nullptr;
  if (entry->relation) {
    std::lock_guard lock(impl_->mutex);
    ++impl_->stats.hits;
    return entry->relation;
  }
  std::shared_ptr<const Relation> rel;
  try {
    rel = detail::build_relation(*this, input, kind, key.spec, target, op);
  } catch (...) {
    // A failed build leaves no trace in the cache (errors change no state).
    std::lock_guard lock(impl_->mutex);
    auto it = impl_->cache.find(key);
    if (it != impl_->cache.end() && it->second == entry) {
      impl_->lru.erase(entry->lru_pos);
      impl_->cache.erase(it);
    }
    throw;
  }
  std::lock_guard lock(impl_->mutex);
  entry->relation = rel;  // published under `mutex` too: find_producer_locked reads it there
  ++impl_->stats.misses;
  impl_->evict_locked();  // only after a successful build: a failed call evicts nothing
  return rel;
}

void CoordinateManager::clear_cache() {
  std::lock_guard lock(impl_->mutex);
  impl_->cache.clear();
  impl_->lru.clear();
}

void CoordinateManager::set_cache_capacity(std::size_t max_relations) {
  std::lock_guard lock(impl_->mutex);
  impl_->capacity = max_relations;
  impl_->evict_locked();
}

RelationCacheStats CoordinateManager::cache_stats() const {
  std::lock_guard lock(impl_->mutex);
  RelationCacheStats s = impl_->stats;
  s.relations = impl_->cache.size();
  s.coordinate_sets = 0;
  for (const auto& [id, weak] : impl_->sets) s.coordinate_sets += weak.expired() ? 0 : 1;
  return s;
}

}  // namespace lattice

// Coordinate identity (SPEC §2): CoordinateMapKey, CoordinateSet and the
// CoordinateManager that issues keys and caches relations between sets.
//
// Ownership: a SparseTensor holds its CoordinateSet strongly. The manager
// remembers sets weakly and caches relations; a cache entry dies with its
// input (or target) set, and the cache is additionally bounded (LRU), so a
// manager that sees a stream of unrelated scans does not grow without bound.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "lattice/core/array.hpp"
#include "lattice/core/kernel_spec.hpp"

namespace lattice {

class Relation;
enum class RelationKind : std::uint8_t;

// (id, stride, manager_id). Same key => same coordinate values; equal values
// inserted separately get different keys. id 0 is "no key".
struct CoordinateMapKey {
  std::uint64_t id = 0;
  Int3 stride{1};
  std::uint64_t manager_id = 0;

  bool valid() const { return id != 0; }
  std::string str() const;
  friend bool operator==(const CoordinateMapKey&, const CoordinateMapKey&) = default;
};

namespace detail {
// A backend's lookup structure over a coordinate set (e.g. the CPU hash
// table). Built on first use and cached on the set.
class CoordIndex {
 public:
  virtual ~CoordIndex() = default;
};
}  // namespace detail

// An immutable coordinate array registered with a manager.
//  coords:       (capacity, 4) int32 rows (batch, x, y, z), physical units, on device()
//  active_rows:  int32 scalar on device(); rows >= it are unused capacity
//  batch_counts: optional (B,) int32 rows per batch item, on device()
class CoordinateSet {
 public:
  CoordinateSet(Array coords, Array active_rows, Int3 stride, std::optional<Array> batch_counts, CoordinateMapKey key,
                std::optional<std::int64_t> known_rows);

  const Array& coords() const { return coords_; }
  const Array& active_rows() const { return active_rows_; }
  Int3 stride() const { return stride_; }
  const CoordinateMapKey& key() const { return key_; }
  std::int64_t capacity() const { return coords_.dim(0); }
  Device device() const { return coords_.device(); }
  const std::optional<Array>& batch_counts() const { return batch_counts_; }
  // Active row count if the host knows it without a device round trip.
  std::optional<std::int64_t> known_rows() const;
  // Host-facing: the active row count (reads the device scalar once, then caches).
  std::int64_t rows() const;

  // The backend index over these coordinates, built by `build` on first use.
  std::shared_ptr<const detail::CoordIndex> index(
      const std::function<std::shared_ptr<const detail::CoordIndex>()>& build) const;

 private:
  Array coords_;
  Array active_rows_;
  Int3 stride_;
  std::optional<Array> batch_counts_;
  CoordinateMapKey key_;
  mutable std::mutex mutex_;
  mutable std::optional<std::int64_t> known_rows_;
  mutable std::shared_ptr<const detail::CoordIndex> index_;
};

struct RelationCacheStats {
  std::size_t relations = 0;        // entries held now
  std::size_t coordinate_sets = 0;  // live sets registered
  std::size_t hits = 0;
  std::size_t misses = 0;
  std::size_t evictions = 0;
};

class CoordinateManager : public std::enable_shared_from_this<CoordinateManager> {
 public:
  static std::shared_ptr<CoordinateManager> create();
  // The process-wide manager used when none is given.
  static std::shared_ptr<CoordinateManager> default_manager();

  ~CoordinateManager();
  CoordinateManager(const CoordinateManager&) = delete;
  CoordinateManager& operator=(const CoordinateManager&) = delete;

  std::uint64_t id() const { return id_; }
  bool owns(const CoordinateMapKey& key) const { return key.manager_id == id_; }

  // Registers coordinates and issues a new key. Arrays are shared, not copied;
  // validation is the caller's (SparseTensor::from_coords does it).
  std::shared_ptr<const CoordinateSet> insert(Array coords, Array active_rows, Int3 stride,
                                              std::optional<Array> batch_counts = std::nullopt,
                                              std::optional<std::int64_t> known_rows = std::nullopt);
  // The live set for `key`, or null if it was never issued here or has died.
  std::shared_ptr<const CoordinateSet> find(const CoordinateMapKey& key) const;

  // The relation (input, target, spec, kind), built on a miss. Relation
  // building for one key runs once even when several threads ask at once.
  // `op` names the calling operation in errors.
  std::shared_ptr<const Relation> relation(const std::shared_ptr<const CoordinateSet>& input, RelationKind kind,
                                           const KernelSpec& spec, const std::shared_ptr<const CoordinateSet>& target,
                                           const char* op, bool* was_cached = nullptr);

  // Drops every cached relation (coordinate sets stay alive while tensors hold them).
  void clear_cache();
  // Largest number of relations kept (least recently used are evicted first); default 512.
  void set_cache_capacity(std::size_t max_relations);
  RelationCacheStats cache_stats() const;

 private:
  CoordinateManager();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::uint64_t id_;
};

}  // namespace lattice

// Open-addressing hash table from packed coordinate keys to row indices
// (linear probing, power-of-two capacity, load factor <= 0.5). Built once per
// coordinate set and read concurrently afterwards.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "lattice/core/coordinates.hpp"
#include "relation/coord_key.hpp"

namespace lattice::cpu {

class CoordHashTable {
 public:
  explicit CoordHashTable(std::int64_t expected_keys);

  // Inserts key -> row unless the key is present. Returns the row stored for
  // the key and whether this call inserted it. Not thread-safe.
  std::pair<std::int32_t, bool> insert(std::uint64_t key, std::int32_t row);
  // Row for key, or -1. Safe to call concurrently once building is done.
  std::int32_t find(std::uint64_t key) const {
    std::uint64_t slot = detail::hash_key(key) & mask_;
    while (true) {
      const std::uint64_t k = keys_[slot];
      if (k == key) return rows_[slot];
      if (k == detail::k_empty_key) return -1;
      slot = (slot + 1) & mask_;
    }
  }
  std::int64_t size() const { return size_; }

 private:
  std::vector<std::uint64_t> keys_;
  std::vector<std::int32_t> rows_;
  std::uint64_t mask_ = 0;
  std::int64_t size_ = 0;
};

// The CPU index of a coordinate set: keys are logical coordinates
// (physical / stride) of the active rows.
class CpuCoordIndex final : public detail::CoordIndex {
 public:
  explicit CpuCoordIndex(CoordHashTable t) : table(std::move(t)) {}
  CoordHashTable table;
};

// Builds (or fetches the cached) CPU index of `set`. If the active rows hold a
// duplicate coordinate, throws ValueError naming `op` and both rows.
const CoordHashTable& coord_index(const CoordinateSet& set, const char* op);

// Looks up a logical coordinate; -1 when absent or outside the key range.
inline std::int32_t lookup(const CoordHashTable& table, std::int64_t b, std::int64_t x, std::int64_t y,
                           std::int64_t z) {
  if (!detail::key_fits(b, x, y, z)) return -1;
  return table.find(detail::pack_key(static_cast<std::int32_t>(b), static_cast<std::int32_t>(x),
                                     static_cast<std::int32_t>(y), static_cast<std::int32_t>(z)));
}

}  // namespace lattice::cpu

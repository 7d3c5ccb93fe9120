#include "backend/cpu/coord_hash.hpp"

#include <bit>

#include "lattice/core/error.hpp"

namespace lattice::cpu {

CoordHashTable::CoordHashTable(std::int64_t expected_keys) {
  const auto want = static_cast<std::uint64_t>(std::max<std::int64_t>(expected_keys, 8)) * 2;
  const std::uint64_t capacity = std::bit_ceil(want);
  keys_.assign(capacity, detail::k_empty_key);
  rows_.assign(capacity, -1);
  mask_ = capacity - 1;
}

std::pair<std::int32_t, bool> CoordHashTable::insert(std::uint64_t key, std::int32_t row) {
  if (static_cast<std::uint64_t>(size_ + 1) * 2 > keys_.size()) {
    // Grow to keep the load factor at or below 0.5.
    CoordHashTable bigger(static_cast<std::int64_t>(keys_.size()));
    for (std::size_t s = 0; s < keys_.size(); ++s) {
      if (keys_[s] != detail::k_empty_key) bigger.insert(keys_[s], rows_[s]);
    }
    *this = std::move(bigger);
  }
  std::uint64_t slot = detail::hash_key(key) & mask_;
  while (true) {
    const std::uint64_t k = keys_[slot];
    if (k == key) return {rows_[slot], false};
    if (k == detail::k_empty_key) {
      keys_[slot] = key;
      rows_[slot] = row;
      ++size_;
      return {row, true};
    }
    slot = (slot + 1) & mask_;
  }
}

const CoordHashTable& coord_index(const CoordinateSet& set, const char* op) {
  auto index = set.index([&]() -> std::shared_ptr<const detail::CoordIndex> {
    const std::int64_t n = set.rows();
    const std::int32_t* c = set.coords().data<std::int32_t>();
    const Int3 s = set.stride();
    CoordHashTable table(n);
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int32_t* r = c + 4 * i;
      // Range and divisibility were validated when the set was made.
      const std::uint64_t key = detail::pack_key(r[0], r[1] / s.x, r[2] / s.y, r[3] / s.z);
      auto [row, inserted] = table.insert(key, static_cast<std::int32_t>(i));
      if (!inserted) {
        fail(op, "coords", "rows ", row, " and ", i, " hold the same coordinate (", r[0], ", ", r[1], ", ", r[2], ", ",
             r[3], "); coordinates must be unique");
      }
    }
    return std::make_shared<CpuCoordIndex>(std::move(table));
  });
  return static_cast<const CpuCoordIndex&>(*index).table;
}

}  // namespace lattice::cpu

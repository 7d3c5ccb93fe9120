// Device hash table over packed coordinate keys (relation/coord_key.hpp):
// open addressing, linear probing, power-of-two capacity, load factor <= 0.5.
// Insertion claims a slot with atomicCAS on the key; values are int32.
#pragma once

#include <cstdint>

#include "relation/coord_key.hpp"

namespace lattice::cuda::device {

struct HashView {
  unsigned long long* keys;
  std::int32_t* values;
  unsigned long long mask;  // capacity - 1
};

struct ConstHashView {
  const unsigned long long* keys;
  const std::int32_t* values;
  unsigned long long mask;
};

// Value stored for `key`, or -1.
__device__ __forceinline__ std::int32_t hash_find(const ConstHashView& t, unsigned long long key) {
  unsigned long long slot = detail::hash_key(key) & t.mask;
  while (true) {
    const unsigned long long k = t.keys[slot];
    if (k == key) return t.values[slot];
    if (k == detail::k_empty_key) return -1;
    slot = (slot + 1) & t.mask;
  }
}

// Claims (or finds) the slot of `key`; returns the slot index.
__device__ __forceinline__ unsigned long long hash_claim(const HashView& t, unsigned long long key) {
  unsigned long long slot = detail::hash_key(key) & t.mask;
  while (true) {
    const unsigned long long prev = atomicCAS(&t.keys[slot], detail::k_empty_key, key);
    if (prev == detail::k_empty_key || prev == key) return slot;
    slot = (slot + 1) & t.mask;
  }
}

// Slot holding `key` (which must be present).
__device__ __forceinline__ unsigned long long hash_slot(const ConstHashView& t, unsigned long long key) {
  unsigned long long slot = detail::hash_key(key) & t.mask;
  while (t.keys[slot] != key) slot = (slot + 1) & t.mask;
  return slot;
}

// Lookup of a logical coordinate; -1 when absent or outside the key range.
__device__ __forceinline__ std::int32_t lookup(const ConstHashView& t, long long b, long long x, long long y,
                                               long long z) {
  if (!detail::key_fits(b, x, y, z)) return -1;
  return hash_find(t, detail::pack_key(static_cast<std::int32_t>(b), static_cast<std::int32_t>(x),
                                       static_cast<std::int32_t>(y), static_cast<std::int32_t>(z)));
}

}  // namespace lattice::cuda::device

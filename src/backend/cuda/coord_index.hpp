// The CUDA index of a coordinate set: a device hash table from packed
// logical coordinates to rows (see device/hash.cuh for the probing rules).
// Host-side header (no CUDA types), shared by the .cu files that build or
// read relations.
#pragma once

#include <cstdint>
#include <memory>

#include "lattice/core/array.hpp"
#include "lattice/core/coordinates.hpp"

namespace lattice::cuda {

class CudaCoordIndex final : public detail::CoordIndex {
 public:
  CudaCoordIndex(Array keys_, Array values_) : keys(std::move(keys_)), values(std::move(values_)) {}
  Array keys;    // (capacity,) int64 storage of unsigned 64-bit keys; all-ones = empty
  Array values;  // (capacity,) int32 rows
  std::uint64_t mask() const { return static_cast<std::uint64_t>(keys.dim(0)) - 1; }
};

// An empty table for up to `max_keys` keys (capacity: a power of two >= 2 * max_keys);
// values start as all-ones (-1 signed, the largest value for unsigned atomicMin).
std::shared_ptr<CudaCoordIndex> make_table(std::int64_t max_keys, Device device);

// The cached index of `set`, built on first use. Duplicate coordinates among
// the active rows are recorded as a sticky device error naming `op`.
const CudaCoordIndex& coord_index(const CoordinateSet& set, const char* op);

}  // namespace lattice::cuda

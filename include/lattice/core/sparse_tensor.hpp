// SparseTensor (SPEC §1): coordinates + row-aligned features + identity.
//
// Fields:
//   coords        (capacity, 4) int32, rows (batch, x, y, z), physical units;
//                 x, y, z divisible by the stride; unique among active rows
//   feats         (capacity, C) float16 / bfloat16 / float32 / float64
//   stride        Int3, the lattice scale
//   active_rows   int32 scalar on the tensor's device; rows >= it are capacity
//   batch_counts  optional (B,) int32 rows per batch item
//   key/manager   identity issued by a CoordinateManager
// coords, active_rows, stride, batch_counts and key live in the shared
// CoordinateSet; tensors with the same key share it and are row-aligned.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "lattice/core/array.hpp"
#include "lattice/core/coordinates.hpp"

namespace lattice {

struct SparseTensorOptions {
  Int3 stride{1};
  // Manager to register the coordinates with; null = the default manager.
  std::shared_ptr<CoordinateManager> manager;
  // Verify that the active coordinate rows are unique (SPEC Appendix A).
  bool check_unique = true;
  // Active rows; null = all rows (capacity). Must be <= capacity.
  std::optional<std::int64_t> active_rows;
  // Rows per batch item; computed from the batch column when absent.
  std::optional<Array> batch_counts;
};

class SparseTensor {
 public:
  SparseTensor() = default;  // undefined

  // User-facing constructor: validates every invariant (dtypes, shapes, same
  // device, divisibility by the stride, key range, uniqueness) and registers
  // the coordinates with a manager. Arrays are shared, never modified.
  static SparseTensor from_coords(Array coords, Array feats, const SparseTensorOptions& options = {});

  // Internal constructor: features for an existing coordinate set (same
  // identity). Checks that feats has one row per coordinate row and lives on
  // the same device.
  SparseTensor(std::shared_ptr<const CoordinateSet> coords, std::shared_ptr<CoordinateManager> manager, Array feats);

  bool defined() const { return coords_ != nullptr; }
  const Array& coords() const { return coords_->coords(); }
  const Array& feats() const { return feats_; }
  Int3 stride() const { return coords_->stride(); }
  std::int64_t capacity() const { return coords_->capacity(); }
  std::int64_t channels() const { return feats_.dim(1); }
  DType dtype() const { return feats_.dtype(); }
  Device device() const { return feats_.device(); }
  const Array& active_rows() const { return coords_->active_rows(); }
  // Host-facing: active row count (a device read on CUDA, cached).
  std::int64_t rows() const { return coords_->rows(); }
  const std::optional<Array>& batch_counts() const { return coords_->batch_counts(); }
  const CoordinateMapKey& key() const { return coords_->key(); }
  const std::shared_ptr<const CoordinateSet>& coordinate_set() const { return coords_; }
  const std::shared_ptr<CoordinateManager>& manager() const { return manager_; }

  // Same identity, new features (rows must match capacity).
  SparseTensor replace_feats(Array feats) const;
  // Deep copy of coords and features onto `device`, registered as a new set
  // in the same manager (a no-op share when already there).
  SparseTensor to(Device device) const;

 private:
  std::shared_ptr<const CoordinateSet> coords_;
  std::shared_ptr<CoordinateManager> manager_;
  Array feats_;
};

}  // namespace lattice
